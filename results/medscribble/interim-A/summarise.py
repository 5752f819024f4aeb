"""Summarise run.sh's runs into summary.csv (this folder): one row per arm and start."""
import json
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/interim-A")
cols = ["n_sessions", "dice_at_iter_1", "dice_at_clicks_3", "dice_at_clicks_5", "dice_auc_clicks", "noc_90", "nof_90"]
rows = []
for f in sorted(out.glob("*/summary.json")):
    arm, start = f.parent.name.rsplit("-", 1)
    d = json.loads(f.read_text())
    rows.append({"arm": arm, "start": start, **{c: d[c] for c in cols}})
table = pd.DataFrame(rows).sort_values(["start", "arm"])
table.to_csv(Path(__file__).with_name("summary.csv"), index=False, float_format="%.4f")
print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
