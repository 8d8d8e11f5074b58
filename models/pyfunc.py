"""A thin ``mlflow.pyfunc`` wrapper around :class:`models.bundle.ModelBundle`.

The logged model carries the bundle directory as its ``bundle`` artifact. ``predict``
takes a feature frame (the columns of the bundle's feature spec, by name, in any order;
extra columns ignored; categoricals as text) and returns ``p_outcome, p_output,
p_negative`` in the input's row order. It aligns and encodes the columns itself, so it
never depends on pandas categoricals surviving serialisation (LightGBM's own pyfunc
flavour does). The optional ``variant`` param picks ``full`` (default) or ``plan``.

The wrapper class is pickled by reference: loading the model needs the
``activity-scorer`` package importable, as it is wherever the project is installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from models.bundle import LABEL_NAMES, SCORE_COLUMNS, VARIANT_FULL, ModelBundle

logger = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "bundle"

try:  # mlflow is a training/serving dependency; the bundle itself never needs it
    from mlflow.pyfunc import PythonModel as _PythonModel
except ImportError:  # pragma: no cover
    _PythonModel = object


class ActivityScorerModel(_PythonModel):
    """pyfunc model: feature frame -> calibrated ``p_outcome, p_output, p_negative``."""

    def __init__(self) -> None:
        self.bundle: ModelBundle | None = None

    def load_context(self, context) -> None:
        self.bundle = ModelBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))
        logger.info("loaded bundle %s (%s)", self.bundle.manifest.model_name, self.bundle.manifest.trained_at)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Score a feature frame; ``params={"variant": "plan"}`` for planned activities."""
        if self.bundle is None:
            raise RuntimeError("model context not loaded")
        variant = (params or {}).get("variant", VARIANT_FULL)
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.bundle.predict_frame(frame, variant).reset_index(drop=True)


def signature_for(bundle: ModelBundle):
    """Explicit signature: one column per spec feature (double or string), three outputs, a variant param."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([
        ColSpec("string" if f.kind == "categorical" else "double", f.name, required=False)
        for f in bundle.spec.features
    ])
    outputs = Schema([ColSpec("double", SCORE_COLUMNS[label]) for label in LABEL_NAMES])
    params = ParamSchema([ParamSpec("variant", "string", VARIANT_FULL)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(bundle: ModelBundle, frame: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """A few feature rows in the signature's types (text as object with None, numbers as float)."""
    rows = frame[bundle.spec.names].head(n)
    out = {}
    for f in bundle.spec.features:
        col = rows[f.name]
        if f.kind == "categorical":
            out[f.name] = col.astype(object).where(col.notna(), None)
        else:
            out[f.name] = pd.to_numeric(col, errors="coerce").astype("float64")
    return pd.DataFrame(out).reset_index(drop=True)
