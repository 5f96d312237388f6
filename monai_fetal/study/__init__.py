"""The main job and the few-shot study: ``monai-fetal demo`` and ``monai-fetal experiment``.

``stages`` (skip-if-done stages), ``cohorts`` (k-shot subset folders), ``runs`` (the bundle runs),
``demo``, ``experiment``, ``results`` (the results table), ``figures`` and ``report``.
"""
