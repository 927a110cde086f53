"""The leaderboard: results files, aggregates across tasks, and the rendered README, page and plots.

What lives here: ``results`` (the results file's schema and its validation), ``sections`` (what
the tables show: suites, scene variants, the matrix, aggregates across tasks), ``table`` (the
Markdown), ``page`` (the self-contained web page), ``plots`` and ``publish``, which writes all
three from a folder of results files. Beside the code: ``results/`` (the committed results files),
``probes/`` (memory probes, ``aem-bench probe``), and ``README.md``, ``index.html`` and
``plots/``, which ``aem-bench leaderboard`` generates. The top layer, beside the command line: it
reads results files and task metadata, so it imports only the foundations
(``aem_bench.registration``, ``aem_bench.stats``); never the tasks, the simulator, the zoo, the
evaluator or the command line, so that rendering it starts no simulator
(``tests/test_task_metadata.py``).
"""
