"""Where things run: the active client, memory budget, chunk sizes, BLAS threads; TLS certificates.
Imports no other layer.
"""
