"""Storage: the LanceDB tables (``tables``), the progress ``jobs`` table, raw upload blobs.

Nothing is imported here, so that ``storage.jobs`` and ``storage.blobs`` do not load the
CV tables' dependencies: import the module you need.
"""
