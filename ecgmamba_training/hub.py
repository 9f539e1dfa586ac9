"""Publishing to the Hugging Face Hub: fail before anything slow when it cannot work."""

import logging

from .data import SetupError

logger = logging.getLogger("train_hf")


def check_hub_access(training_args):
    """With --push_to_hub: fail now, before data preparation and training, if there is no token or no Hub."""
    if not training_args.push_to_hub:
        return
    from huggingface_hub import HfApi, get_token

    token = training_args.hub_token or get_token()
    if not token:
        raise SetupError(
            "--push_to_hub needs a Hugging Face token with write access: run `hf auth login`, set HF_TOKEN or pass "
            "--hub_token. Nothing was trained."
        )
    try:
        user = HfApi().whoami(token=token)
    except Exception as err:  # offline mode, no network, invalid token
        raise SetupError(
            f"--push_to_hub: cannot reach the Hugging Face Hub with your token ({type(err).__name__}: {err}). "
            "Check the network, HF_HUB_OFFLINE and the token (`hf auth whoami`), or drop --push_to_hub. "
            "Nothing was trained."
        ) from err
    logger.info(
        "Will publish to the Hub as %s: %s", user.get("name", "?"), training_args.hub_model_id or "(output_dir name)"
    )
