"""Train a model: ``python src/train.py model=code_analyzer``; ``-m hparams_search=bytecode_detector_optuna``
runs a sweep. The task is ``training_pipeline.tasks.train``; the configs are ``conf/`` (train.yaml)."""

from training_pipeline.cli import train_main

if __name__ == "__main__":
    train_main()
