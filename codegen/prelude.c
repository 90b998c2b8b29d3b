/* ---- tvm_sophon glue: TVM FFI arguments -> runtime descriptors (generated file) ---- */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tvm/ffi/c_api.h>

#include "sophon.h"
#include "sophon_program.h"
#include "sophon_quant.h"

/* The one emulated chip of this library: created at the first call, shared by
 * every region (as one physical chip would be), used under a lock. */
static sophon_device* g_device;
static pthread_mutex_t g_device_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
  const char* name;
  uint64_t calls;
  sophon_counters last;  /* counters of the region's last run */
} sophon_region_stats;

static void sophon_raise(const char* kind, const char* region, const char* message) {
  const char* parts[4] = {"sophon region ", region, ": ", message};
  TVMFFIErrorSetRaisedFromCStrParts(kind, parts, 4);
}

/* The data of tensor argument `index`, checked against the compiled signature.
 * Returns NULL after raising a Python exception that names the argument. */
static void* sophon_tensor_arg(const char* region, const TVMFFIAny* args, int32_t index,
                                   const char* name, int32_t ndim, const int64_t* shape,
                                   uint8_t dtype_code, uint8_t dtype_bits) {
  char message[512];
  DLTensor* t = NULL;
  if (args[index].type_index == kTVMFFIDLTensorPtr) {
    t = (DLTensor*)args[index].v_ptr;
  } else if (args[index].type_index == kTVMFFITensor) {
    t = (DLTensor*)((char*)args[index].v_obj + sizeof(TVMFFIObject));
  } else {
    snprintf(message, sizeof(message), "argument %d '%s' is not a tensor (type index %d)",
             (int)index, name, (int)args[index].type_index);
    sophon_raise("TypeError", region, message);
    return NULL;
  }
  if (t->device.device_type != kDLCPU) {
    snprintf(message, sizeof(message), "argument '%s' must be in host memory (kDLCPU), got device %d",
             name, (int)t->device.device_type);
    sophon_raise("ValueError", region, message);
    return NULL;
  }
  if (t->dtype.code != dtype_code || t->dtype.bits != dtype_bits || t->dtype.lanes != 1) {
    snprintf(message, sizeof(message), "argument '%s' has dtype code %d bits %d, expected code %d bits %d",
             name, (int)t->dtype.code, (int)t->dtype.bits, (int)dtype_code, (int)dtype_bits);
    sophon_raise("ValueError", region, message);
    return NULL;
  }
  int shape_ok = t->ndim == ndim;
  for (int32_t i = 0; shape_ok && i < ndim; ++i) shape_ok = t->shape[i] == shape[i];
  if (!shape_ok) {
    char got[160] = "", want[160] = "";
    for (int32_t i = 0; i < t->ndim; ++i)
      snprintf(got + strlen(got), sizeof(got) - strlen(got), i ? ", %lld" : "%lld", (long long)t->shape[i]);
    for (int32_t i = 0; i < ndim; ++i)
      snprintf(want + strlen(want), sizeof(want) - strlen(want), i ? ", %lld" : "%lld", (long long)shape[i]);
    snprintf(message, sizeof(message), "argument '%s' has shape (%s), expected (%s)", name, got, want);
    sophon_raise("ValueError", region, message);
    return NULL;
  }
  if (t->strides != NULL) {
    int64_t expected = 1;
    for (int32_t i = ndim - 1; i >= 0; --i) {
      if (t->shape[i] != 1 && t->strides[i] != expected) {
        snprintf(message, sizeof(message), "argument '%s' is not a compact row-major tensor", name);
        sophon_raise("ValueError", region, message);
        return NULL;
      }
      expected *= t->shape[i];
    }
  }
  if (t->data == NULL) {
    snprintf(message, sizeof(message), "argument '%s' has no data", name);
    sophon_raise("ValueError", region, message);
    return NULL;
  }
  return (char*)t->data + t->byte_offset;
}

/* Runs one region's program on the library's device: creates the device on first
 * use, allocates the region's scratch buffers on first use (kept, like the device,
 * for the library's lifetime: no allocation or page faults per call), runs the
 * commands under the device lock, and records the counters. Returns 0, or -1
 * after raising a Python exception. */
static int sophon_run_region(const char* region, const sophon_chip* chip,
                             const sophon_program* program, void** buffers, int num_args,
                             int num_scratch, const size_t* scratch_bytes, void** scratch,
                             sophon_region_stats* stats, TVMFFIAny* result) {
  int status = 0;
  sophon_status created = SOPHON_OK;
  pthread_mutex_lock(&g_device_lock);
  if (g_device == NULL && (created = sophon_device_create(chip, &g_device)) == SOPHON_OK) {
    /* host execution settings, read once: SOPHON_NUM_THREADS (default 0 = all
       online CPUs), SOPHON_REFERENCE=1 (plain reference kernels) and SOPHON_ISA
       (0 C, 1 AVX2, 2 AVX-512: the most the fast kernels may use; default all) */
    const char* threads = getenv("SOPHON_NUM_THREADS");
    const char* reference = getenv("SOPHON_REFERENCE");
    const char* isa = getenv("SOPHON_ISA");
    int n = threads != NULL && threads[0] != '\0' ? atoi(threads) : 0;
    if (sophon_device_set_threads(g_device, n < 0 ? 0 : n) != SOPHON_OK)
      sophon_device_set_threads(g_device, 1);
    sophon_device_set_reference(g_device, reference != NULL && atoi(reference) != 0);
    if (isa != NULL && isa[0] != '\0') sophon_device_set_isa(g_device, atoi(isa));
  }
  for (int i = 0; i < num_scratch && g_device != NULL; ++i) {
    if (scratch[i] == NULL) scratch[i] = malloc(scratch_bytes[i]);
    if (scratch[i] == NULL) status = -1;
    buffers[num_args + i] = scratch[i];
  }
  if (g_device == NULL || status != 0) {
    char message[160];
    if (g_device == NULL)
      snprintf(message, sizeof(message), "cannot create the emulated %s device: %s%s", chip->name,
               sophon_status_name(created),
               created == SOPHON_ERR_NOMEM ? " (its local memory does not fit in host memory)"
                                           : " (the chip profile is invalid)");
    else
      snprintf(message, sizeof(message), "out of host memory for scratch buffers");
    sophon_raise("RuntimeError", region, message);
    status = -1;
  } else {
    sophon_device_reset_counters(g_device);
    if (sophon_program_run(g_device, program, buffers) != SOPHON_OK) {
      sophon_raise("RuntimeError", region, sophon_device_error(g_device));
      status = -1;
    }
    stats->calls += 1;
    stats->last = *sophon_device_counters(g_device);
  }
  pthread_mutex_unlock(&g_device_lock);
  if (status == 0) {
    result->type_index = kTVMFFINone;
    result->v_int64 = 0;
  }
  return status;
}
/* ---- end of glue ---- */
