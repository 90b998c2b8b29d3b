/* ---- tvm_sophon glue: TVM FFI arguments -> runtime descriptors (generated file) ---- */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tvm/ffi/c_api.h>

#include "sophon.h"

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
  char text[1024];
  snprintf(text, sizeof(text), "sophon region %s: %s", region, message);
  TVMFFIErrorSetRaisedFromCStr(kind, text);
}

/* The DLTensor behind argument `index`, checked against the compiled signature.
 * Returns NULL after raising a Python exception that names the argument. */
static DLTensor* sophon_tensor_arg(const char* region, const TVMFFIAny* args, int32_t index,
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
  return t;
}

static void* sophon_data(const DLTensor* t) { return (char*)t->data + t->byte_offset; }

/* Locks the device, creating it on first use. Returns NULL after raising. */
static sophon_device* sophon_acquire(const char* region, const sophon_chip* chip) {
  pthread_mutex_lock(&g_device_lock);
  if (g_device == NULL && sophon_device_create(chip, &g_device) != SOPHON_OK) {
    pthread_mutex_unlock(&g_device_lock);
    sophon_raise("RuntimeError", region, "cannot create the emulated device (out of host memory?)");
    return NULL;
  }
  sophon_device_reset_counters(g_device);
  return g_device;
}

static void sophon_release(sophon_region_stats* stats) {
  stats->calls += 1;
  stats->last = *sophon_device_counters(g_device);
  pthread_mutex_unlock(&g_device_lock);
}

#define SOPHON_TRY(call)                                   \
  do {                                                     \
    if ((call) != SOPHON_OK) goto chip_error;              \
  } while (0)
/* ---- end of glue ---- */
