"""Load the hub model ``org/tiny`` on the CPU (fetched from HF_ENDPOINT on first use) and print its
backend's class name and the model's name."""

from mcr.models import load_model

model = load_model("org/tiny", device="cpu")
print(type(model).__name__, model.name)
