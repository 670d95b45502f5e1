"""hwcc's benchmarks: each published comparison, run on this machine, written to BENCHMARKS.md.

    python -m bench            # every section; rewrites BENCHMARKS.md and bench/results/
    python -m bench --quick    # a smoke run: BENCHMARKS.quick.md and bench/results-quick/
    python -m bench --only compile_cost,table_fidelity

A section is one module ``bench/<name>.py``; the runner finds it by its file (a module
with a top-level ``TITLE`` and ``def run``), so adding a comparison is adding a file:

.. code-block:: python

    TITLE = "Compile cost"     # the section's heading
    ORDER = 60                 # where it goes on the page (ascending)

    def run(quick: bool, out: pathlib.Path) -> dict:
        # does the work, writes its SVG plots into ``out``, and returns
        return {"title": TITLE,
                "what": "one paragraph: exactly what was run (models, targets, settings, seeds)",
                "markdown": "the body: tables, ![alt](results/<file>.svg) links, findings",
                "data": {...},           # raw numbers, saved as results/<name>.json
                "seconds": 12.3}         # optional: the runner times the call otherwise

Plots link to ``results/<file>``; the runner points the links at the results folder.
Modules whose names start with ``_`` are helpers, never sections (:mod:`bench._common`).
"""
