"""Train every model (``make train-all``): cross-fitted base models, full-split base models, the aggregator.

python scripts/train_all.py                         # outputs/pipeline/default; a rerun resumes
python scripts/train_all.py --force                 # retrain every stage
python scripts/train_all.py force=[aggregator]      # retrain some stages (a model name = all its stages)
python scripts/train_all.py name=big corpus.n_contracts=1500 inner_folds=4
python scripts/train_all.py models.code_analyzer.enabled=false
"""

from training_pipeline.cli import train_all_main

if __name__ == "__main__":
    train_all_main()
