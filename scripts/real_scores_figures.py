"""One run of "when the real scores arrive" on the real data: train on stud.csv, then check the model on its
own test split as a school would, with the real math scores in the class list.

    python scripts/real_scores_figures.py [--data /work/shared/data/stud.csv] [--cut 50]

Trains into a temporary store (seed 42, test size 0.2, the default candidates), posts the test split as a
class list with its ``math_score`` column to the app (JSON answer: the ``evaluation``; the page: its
sentences), and runs the batch command on the same file (``evaluation.json``, per student group). Prints
what each gave; nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from html import unescape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from app import create_app
    from src.config import AppConfig
    from src.lifecycle.training import TrainingConfig, train
    from src.pipeline.batch_predict import BatchConfig, run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "stud.csv"))
    parser.add_argument("--cut", type=float, default=50.0)
    args = parser.parse_args(argv)
    out = sys.stdout
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "store"
        result = train(TrainingConfig(store=store, data=args.data, tracking=False, n_jobs=2))
        test = result.ingestion.test_path
        out.write(
            f"model {result.trainer.model_name} ({result.version}), test split of {len(result.ingestion.test)} students\n"
        )
        client = create_app(
            AppConfig(artifacts_dir=store, drift_dir=Path(folder) / "drift", support_cut=args.cut)
        ).test_client()
        body = test.read_bytes()
        answer = client.post("/predictdata", data=body, headers={"Content-Type": "text/csv"}).get_json()
        evaluation = answer["evaluation"]
        out.write("\nclass list (JSON answer), evaluation:\n")
        out.write(json.dumps({k: v for k, v in evaluation.items() if k != "test_split"}, indent=1) + "\n")
        out.write("beside the test split's promise:\n")
        out.write(json.dumps(evaluation["test_split"], indent=1) + "\n")
        page = client.post(
            "/predictdata",
            data={"upload": "class_list", "class_list": (test.open("rb"), "class.csv")},
            content_type="multipart/form-data",
        ).get_data(as_text=True)
        section = page.split('id="class-evaluation"')[1].split("</section>")[0]
        out.write("\nthe page says:\n")
        for sentence in re.findall(r"<p[^>]*>(.*?)</p>", section, re.S):
            out.write("  " + unescape(re.sub(r"\s+", " ", sentence)).strip() + "\n")
        batch_out = Path(folder) / "batch"
        run(BatchConfig(input=str(test), output=str(batch_out), store=str(store), support_cut=args.cut))
        report = json.loads((batch_out / "evaluation.json").read_text())
        overall = report["overall"]
        out.write(
            f"\nbatch command, evaluation.json overall: students {overall['students']}, MAE {overall['mae']:.3f}, "
            f"bias {overall['bias']:+.3f}, coverage {overall['coverage']:.3f}\n"
        )
        out.write("per group (count, MAE, bias, coverage):\n")
        for feature, rows in report["groups"].items():
            for group, row in rows.items():
                figures = ("-" if row[k] is None else f"{row[k]:.3f}" for k in ("mae", "bias", "coverage"))
                out.write(
                    f"  {feature}={group}: {row['count']}, "
                    + ", ".join(figures)
                    + (" (small)" if row["small"] else "")
                    + "\n"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
