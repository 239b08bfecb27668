"""The ``daskgmm`` command: fit, select, predict, score, info, cluster, certificates, demo.
"""
