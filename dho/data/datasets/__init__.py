"""One module per dataset; each registers itself in :data:`dho.data.DATASETS` on import.

Every module in this folder is imported by ``import dho.data`` (a new file is picked up
without editing any list).
"""
