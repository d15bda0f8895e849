"""The model-free core of AZR self-play: task types, prompts, response parsing, buffers, rewards, TRR++.

Modules: ``task_types`` (one object per task type and their table), ``records`` (task records,
seed files), ``prompts`` (task texts, templates, token budget), ``parsing`` (reading responses),
``buffers`` (task buffers and sampling), ``rewards`` (both roles' rewards), ``advantages`` (TRR++
whitening), ``seeding`` (the seeding phase), ``iteration`` (one self-play step), ``options``
(the ``azr.*`` and ``rollout.*`` config sections).
"""
