/*
 * sophon_isa.h - the instruction table: for each TIU instruction, its checks, its
 * cost, its reference kernel and its fast kernel, in one place (sophon_isa.c).
 * Not public API: the public sophon_tiu_* functions (sophon.h, sophon_quant.h)
 * and sophon_program_run (sophon_program.h) go through sophon_isa_execute.
 */
#ifndef SOPHON_ISA_H_
#define SOPHON_ISA_H_

#include "chip/sophon_internal.h"
#include "sophon_program.h"

/* Validates the operands; returns SOPHON_OK or sets the device error naming op. */
typedef sophon_status (*sophon_check_fn)(sophon_device* dev, const char* op,
                                         const sophon_operands* o);
/* TIU cycles of the instruction (chip/sophon_cost.h), on checked operands. */
typedef uint64_t (*sophon_cost_fn)(const sophon_chip* chip, const sophon_operands* o);
/* Multiply-accumulates the instruction performs (counted in sophon_counters). */
typedef uint64_t (*sophon_macs_fn)(const sophon_operands* o);
/* The reference kernel: the specification; runs on checked operands. */
typedef void (*sophon_kernel_fn)(sophon_device* dev, const sophon_operands* o);
/* The fast kernel: same results (bit-identical, or within the tolerance its file
 * states); 0, or -1 when it declines (no scratch memory, a case it does not
 * cover): the reference kernel then runs. */
typedef int (*sophon_fast_fn)(sophon_device* dev, const sophon_operands* o);

typedef struct {
  sophon_cmd_kind kind;       /* its command in a program (sophon_program.h) */
  const char* name;           /* the command's name in program errors: "conv2d" */
  const char* op;             /* the instruction's name in its checks' errors */
  sophon_check_fn check;
  sophon_cost_fn cost;
  sophon_macs_fn macs;        /* NULL: none (0) */
  sophon_kernel_fn reference;
  sophon_fast_fn fast;        /* NULL: the reference kernel only */
} sophon_instruction;

/* The table entry of a TIU command kind, or NULL (LOAD, STORE, TIMESTEP, unknown). */
const sophon_instruction* sophon_isa_find(sophon_cmd_kind kind);

/* Runs one TIU instruction: its checks, then its fast kernel (unless the device is
 * in reference mode) or its reference kernel, then the counters (cycles, MACs,
 * LMEM peak). */
sophon_status sophon_isa_execute(sophon_device* dev, sophon_cmd_kind kind,
                                 const sophon_operands* o);

#endif /* SOPHON_ISA_H_ */
