"""The JSON Schemas of the MQTT contract, one file per model (`satellite schema`)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from satellite.mqtt.contracts import (
    Command,
    GatewayState,
    OverlayHint,
    StateMessage,
    StatusMessage,
    TranscriptFinal,
    TranscriptInterim,
    WakeClaim,
    WakeResult,
)

SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "state": StateMessage,
    "transcript_interim": TranscriptInterim,
    "transcript_final": TranscriptFinal,
    "status": StatusMessage,
    "gateway_state": GatewayState,
    "overlay_hint": OverlayHint,
    "command": Command,
    "wake_claim": WakeClaim,
    "wake_result": WakeResult,
}


def write_schemas(out_dir: Path) -> list[Path]:
    """Write one JSON Schema file per contract model into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMA_MODELS.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
