"""The generic implementation, written against the Python Array API standard.

Every function here takes arrays of any compliant namespace (found with
``array_api_compat.array_namespace``) and returns arrays of the same namespace and
device. Small constants (window, filterbank) are built once on the host in float64
(:mod:`arraymel.core.windows`, :mod:`arraymel.core.filterbank`) and moved to the target namespace,
device and dtype.
"""
