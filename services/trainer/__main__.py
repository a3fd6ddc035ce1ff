"""``python -m services.trainer``: the trainer worker with settings from the environment."""

from recsys_stream.settings import Settings
from services.logs import configure_logging
from services.trainer.app import run_worker

if __name__ == "__main__":
    settings = Settings()
    configure_logging(settings)
    run_worker(settings)
