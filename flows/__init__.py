"""lcpipe's top layer: Prefect flows and the ``lcpipe`` command line.

Flows (:mod:`flows.train`, :mod:`flows.classify`) only sequence the plain
functions of ``pipeline``, ``features`` and ``models`` and pass file paths
between them; the command line (:mod:`flows.cli`) calls the same functions.
Nothing is imported here, so ``lcpipe --help`` does not load Prefect.
"""
