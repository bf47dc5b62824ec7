"""Code shared by the tests: demo warehouses and readers of their state (:mod:`.warehouse`), sandbox
settings and servers (:mod:`.sandbox`), and the ``kill -9`` harness (:mod:`.kill`)."""
