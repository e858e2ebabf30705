"""The dynamics command: --json prints one object with the documented keys, whose fixed points
are fixed for the model (checked with torch.nn's GRU); bad arguments give one line naming
the value and what is allowed, before any training."""

import json

import pytest
import torch

from main import main


def dynamics(capsys, *argv):
    code = main(["dynamics", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_one_object_with_the_documented_keys(capsys, tmp_path):

    code, out, err = dynamics(capsys, "--preset", "parity-gru", "--steps", "3", "--input", "1",
                              "--starts", "32", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"pca", "fixed_points", "slow_points", "input_name", "input", "inputs", "step", "kind",
            "hidden_size", "num_layers", "state_layout", "starts", "tolerance", "seconds"} <= set(data)
    assert data["input_name"] == "1" and data["input"] == [1.0] and data["inputs"] == ["zero", "1"]
    assert data["step"] == 3 and data["starts"] == 32 and data["state_layout"] == ["h0"]
    ratios = data["pca"]["explained_variance"]
    assert len(ratios) == 10 and 0.99 < sum(ratios) <= 1 + 1e-9 and ratios == sorted(ratios, reverse=True)
    assert data["fixed_points"]
    for point in data["fixed_points"]:
        assert set(point) == {"state", "q", "eigenvalues", "stable", "marginal"}
        assert len(point["state"]) == 32 and len(point["eigenvalues"]) == 32
        assert point["q"] <= data["tolerance"]
        moduli = [abs(complex(*ev)) for ev in point["eigenvalues"]]
        assert moduli == sorted(moduli, reverse=True) and point["stable"] == (moduli[0] < 1 + 1e-3)
    assert "] 3/3" in err  # the progress bar


def test_reported_fixed_points_are_fixed_for_torch_nn_with_the_models_weights(capsys, tmp_path):
    """Independently of the finder's own step map: torch.nn.GRU, the saved weights, float32."""
    from core.session.format import open_session

    path = tmp_path / "run.rnnx"
    assert main(["train", "--preset", "parity-gru", "--steps", "5", "--save", str(path)]) == 0
    capsys.readouterr()
    code, out, err = dynamics(capsys, "--session", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["step"] == 5  # a session is analysed as saved
    net = open_session(path).model.recurrent
    ref = torch.nn.GRU(1, 32)
    ref.load_state_dict(net.state_dict())
    for point in data["fixed_points"]:
        h = torch.tensor(point["state"], dtype=torch.float32).view(1, 1, 32)
        with torch.no_grad():
            _, h1 = ref(torch.zeros(1, 1, 1), h)
        q = 0.5 * float(((h1.double() - h.double()) ** 2).sum())
        assert q < 1e-8


def test_readable_summary_names_the_points(capsys):
    code, out, _ = dynamics(capsys, "--preset", "adding-lstm", "--steps", "0", "--starts", "16")
    assert code == 0
    assert out.startswith("Adding problem: lstm, step 0, input x* = zero (choices: zero)")
    assert "1 fixed point (q <= 1e-12)" in out and "stable" in out


@pytest.mark.parametrize(("argv", "named"), [
    (["--preset", "parity-gru", "--input", "2,3"], "input '2,3' is not an input of this task; give zero, '1' or 1 number"),
    (["--preset", "parity-gru", "--starts", "0"], "--starts must be an integer from 1 to 4096; got 0"),
    (["--preset", "parity-gru", "--steps", "-2"], "--steps must be an integer >= 0; got -2"),
    (["--preset", "dates-attention"], "preset 'dates-attention' is an encoder-decoder (translation) task"),
    (["--preset", "nope"], "nope"),
])
def test_bad_arguments_are_one_line_before_any_training(capsys, argv, named):
    code, out, err = dynamics(capsys, *argv)
    assert code == 2 and out == ""
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line and named in line
    assert "loss" not in err  # nothing was trained


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_users_torch_model_opens_and_its_fixed_points_are_fixed_for_torch_nn(capsys, tmp_path, kind):
    """--model: a bare state dict saved by plain torch, under a constant input given as numbers."""
    import safetensors.torch

    torch.manual_seed(3)
    net = getattr(torch.nn, kind.upper())(3, 6).double()
    path = tmp_path / "net.safetensors"
    safetensors.torch.save_file({k: v.float() for k, v in net.state_dict().items()}, str(path))
    assert main(["dynamics", "--model", str(path), "--input", "0.5,0,-1", "--starts", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == kind and out["hidden_size"] == 6 and out["fixed_points"]
    net = net.float().double()  # the saved (float32) weights, evaluated in float64
    x = torch.tensor([[[0.5, 0.0, -1.0]]], dtype=torch.float64)
    for point in out["fixed_points"]:
        s = torch.tensor(point["state"], dtype=torch.float64)
        h = s[:6].view(1, 1, 6)
        state = (h, s[6:].view(1, 1, 6)) if kind == "lstm" else h
        _, new = net(x, state)
        new = torch.cat([new[0].flatten(), new[1].flatten()]) if kind == "lstm" else new.flatten()
        assert torch.linalg.vector_norm(new - s) < 1e-6


def test_model_and_steps_are_refused_together(capsys, tmp_path):
    assert main(["dynamics", "--model", str(tmp_path / "x.pt"), "--steps", "5"]) == 2
    assert "analysed as it is" in capsys.readouterr().err
