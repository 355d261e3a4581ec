import torch

from {{ cookiecutter.package_name }}.ops import topk_correct


def test_topk_correct_counts_hits_per_k():
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 1, 0])  # top-1 hit, top-2 hit, top-3 hit
    assert topk_correct(logits, targets, ks=(1, 2, 3)).tolist() == [1, 2, 3]


def test_topk_beyond_the_number_of_classes_counts_everything():
    logits, targets = torch.randn(6, 3), torch.randint(0, 3, (6,))
    assert topk_correct(logits, targets, ks=(5,)).tolist() == [6]


def test_topk_correct_stays_on_the_input_device():
    logits, targets = torch.randn(4, 3), torch.randint(0, 3, (4,))
    assert topk_correct(logits, targets).device == logits.device
