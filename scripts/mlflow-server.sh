#!/usr/bin/env bash
# MLflow as deployed (issue 13): a tracking server whose backend store is PostgreSQL and whose
# artifacts live in a local directory the server itself serves (clients upload and download over
# HTTP, so they need no access to that directory). Point the project at it with
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
#
# Usage:
#   MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://USER@HOST:5432/mlflow scripts/mlflow-server.sh [ARTIFACT_DIR] [PORT]
#
# ARTIFACT_DIR defaults to $ACTIVITY_SCORER_HOME/mlflow-artifacts (./.activity-scorer/...), PORT to 5000;
# MLFLOW_HOST (default 127.0.0.1) is the address it binds; MLFLOW_WORKERS (default 2) its processes.
# The database must exist (createdb mlflow); MLflow creates and migrates its tables at start.
set -euo pipefail
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow}"
root="$(cd "$(dirname "$0")/.." && pwd)"
artifacts="${1:-${ACTIVITY_SCORER_HOME:-$root/.activity-scorer}/mlflow-artifacts}"
port="${2:-5000}"
mkdir -p "$artifacts"
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}" DO_NOT_TRACK="${DO_NOT_TRACK:-true}"
exec "${PYTHON:-$root/.venv/bin/python}" -m mlflow server \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --artifacts-destination "$artifacts" --serve-artifacts \
    --host "${MLFLOW_HOST:-127.0.0.1}" --port "$port" --workers "${MLFLOW_WORKERS:-2}"
