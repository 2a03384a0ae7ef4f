"""Local peers for the engine tests: a scripted hostile server, a throwaway CA, real nginx.

Every peer listens on 127.0.0.1 on a port chosen by the kernel and is stopped by its
fixture; see ``tests/peers/fixtures.py`` for the pytest side.
"""
