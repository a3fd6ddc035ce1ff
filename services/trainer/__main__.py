"""``python -m services.trainer``: the trainer worker with settings from the environment."""

from recsys_stream.settings import Settings
from services.trainer.app import run_worker

if __name__ == "__main__":
    run_worker(Settings())
