"""``python -m training_pipeline.monitoring <command>``: see ``monitoring/cli.py``."""

from training_pipeline.monitoring.cli import main

raise SystemExit(main())
