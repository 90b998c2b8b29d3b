"""Fuzzing the importers and the compiler (issue #13): mutated .onnx and .tflite
files, each imported and compiled in its own process with a timeout
(tests/fuzzing.py). Every case must end compiled or rejected with a SophonError:
no crash, no hang, no escaped traceback. A short fixed-seed run here;
``python bench/fuzz.py`` runs hundreds of cases."""
import fuzzing

CASES = 24
SEED = 13


def test_fuzzed_models_compile_or_are_rejected_cleanly():
    result = fuzzing.run(fuzzing.make_cases(CASES, SEED), timeout=60.0)
    counts = result["counts"]
    report = "\n".join(f"{case}: {outcome}\n{tail}" for case, outcome, tail in result["failures"])
    assert counts["cases"] == CASES, counts
    assert [counts[o] for o in fuzzing.FAILURES] == [0] * len(fuzzing.FAILURES), report
    assert counts["compiled"] > 0 and counts["rejected"] > 0, counts  # both paths were exercised
