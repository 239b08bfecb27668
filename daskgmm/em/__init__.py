"""The EM loop over row-chunked Dask arrays: passes (a task per chunk, merged in a tree), the loop that
advances runs, model families, starting parameters, progress, checkpoints. Knows Dask, not scikit-learn.
"""
