"""The generic implementation, written against the Python Array API standard, and the host plan.

Every function here takes arrays of any compliant namespace (found with
``array_api_compat.array_namespace``) and returns arrays of the same namespace and device. The
constants of a configuration (window, filterbank, band ranges, frame geometry, dB constants) are
built once on the host in float64 (:mod:`arraymel.core.plan`) and consumed by every path.
"""
