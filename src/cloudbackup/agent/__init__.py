"""The remote agent (``cloudbackup agent register|run``): serves one registered agent from its
own host over the API alone, with no database, broker or vault setting of the server.

``state`` keeps its identity and keys in a private folder, ``session`` its token (A9, renewed),
``http_storage`` is the engine's object store over the API, ``runner`` takes work from the
event channel and runs the engine here, reporting through B4. It imports only the engine, the
HTTP client and itself (an import-linter contract).
"""
