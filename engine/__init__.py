"""The Dask engine: features, training and batch scoring of histories larger than one process.

``--engine dask`` on ``features``, ``train`` and ``score`` (shared/API.md) runs here. The
history is split into partitions that each hold whole accounts, so every deal, contact and
account feature is computed where its facts are; what crosses accounts (a rep's track record
and usual attention) is computed once over every account and handed back to the partitions.
The results equal the local engine's (``features.build``) exactly.
"""
