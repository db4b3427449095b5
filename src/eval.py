"""Evaluate a checkpoint: ``python src/eval.py ckpt_path=<run>/checkpoints/last.ckpt [data=bytecode_file
data.path=contracts.jsonl split=all]``. The task is ``training_pipeline.tasks.evaluate`` (conf/eval.yaml)."""

from training_pipeline.cli import eval_main

if __name__ == "__main__":
    eval_main()
