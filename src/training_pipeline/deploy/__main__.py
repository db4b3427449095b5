"""``python -m training_pipeline.deploy <command>``: see ``deploy/cli.py``."""

from training_pipeline.deploy.cli import main

raise SystemExit(main())
