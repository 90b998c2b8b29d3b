/*
 * sophon_dtype.c - element sizes and names of the dtypes (sophon.h), on their own
 * so that the cost model needs nothing of the device.
 */
#include "chip/sophon_internal.h"

int32_t sophon_dtype_size(sophon_dtype dtype) {
  switch (dtype) {
    case SOPHON_F32: return 4;
    case SOPHON_I8: return 1;
    case SOPHON_I32: return 4;
  }
  return 0;
}

const char* sophon_dtype_name(sophon_dtype dtype) {
  switch (dtype) {
    case SOPHON_F32: return "F32";
    case SOPHON_I8: return "I8";
    case SOPHON_I32: return "I32";
  }
  return "?";
}
