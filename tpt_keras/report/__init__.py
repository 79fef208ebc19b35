"""Pages a coach can read: a scoring session (one video or many) and an evaluated run, as one
self-contained HTML file each, built from plain dicts (no model, no data pipeline).

* :func:`write_score_report` — per video the score and its spread over the exemplars, the
  timeline of the video with each part's band, the frame each part looks at most, the annotated
  steps when known, and the model's card; several videos add a sortable table and a histogram.
* :func:`write_evaluation_report` — the test table, predicted against true, the parsing metric
  and the videos with the largest errors, each with its timeline.

The dicts are made by :mod:`tpt_keras.serving.scoring` (``tpt score --report``) and
:mod:`tpt_keras.serving.run_report` (``tpt evaluate --report``); :mod:`.timeline` holds the
clip → frame → seconds arithmetic.
"""

from tpt_keras.report.pages import evaluation_page, score_page, write_page


def write_score_report(session: dict, path: str) -> str:
    """Write the page of a scoring session (:func:`tpt_keras.report.pages.score_page`) to
    ``path``; returns the path."""
    return write_page(score_page(session), path)


def write_evaluation_report(evaluation: dict, path: str) -> str:
    """Write the page of an evaluation (:func:`tpt_keras.report.pages.evaluation_page`) to
    ``path``; returns the path."""
    return write_page(evaluation_page(evaluation), path)


__all__ = ["evaluation_page", "score_page", "write_evaluation_report", "write_page",
           "write_score_report"]
