"""RobustBench zoo: a locally saved 'Standard' WRN-28-10 where robustbench expects it."""
import pytest
import torch

from robust_eval.checkpoints import CheckpointError, load_robustbench, robustbench_path


@pytest.mark.slow
def test_standard_wrn_from_local_model_dir_matches_robustbench(tmp_path):
    from robust_eval._compat import install_autoattack_alias

    install_autoattack_alias()  # robustbench imports `autoattack`
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet
    from robustbench.utils import load_model

    torch.manual_seed(0)
    reference = WideResNet(depth=28, widen_factor=10).eval()
    path = robustbench_path("Standard", tmp_path, "cifar10", "Linf")
    assert path == tmp_path / "cifar10" / "Linf" / "Standard.pt"
    path.parent.mkdir(parents=True)
    # The zoo file holds {'state_dict': ...} with DataParallel `module.` prefixes.
    torch.save({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, path)

    ours = load_robustbench("Standard", tmp_path)
    assert ours.robust_eval_meta["arch"] == "wrn28_10" and not ours.training
    assert ours.mean == (0.0, 0.0, 0.0) and ours.std == (1.0, 1.0, 1.0)  # zoo takes [0,1]
    theirs = load_model("Standard", model_dir=tmp_path, dataset="cifar10", threat_model="Linf")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected)
        torch.testing.assert_close(theirs(x), expected)


def test_missing_and_foreign_zoo_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"Standard\.pt does not exist .*Google Drive"):
        load_robustbench("Standard", tmp_path)
    with pytest.raises(CheckpointError, match="no RobustBench model 'Nope'"):
        load_robustbench("Nope", tmp_path)
    path = robustbench_path("Standard", tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"conv1.weight": torch.zeros(16, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointError, match=r"Standard\.pt does not fit RobustBench Standard: "
                                              r"missing block1"):
        load_robustbench("Standard", tmp_path)
