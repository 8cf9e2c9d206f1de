"""The fine-tuning methods of PeterRec's study: what each starts from and what it trains.

=========  ==================  =========  =============================================
method     starts from         patches    trains
=========  ==================  =========  =============================================
peterrec   the pretrained run  yes        patches + head (+ LayerNorms, a flag)
fineall    the pretrained run  no         everything
finecls    the pretrained run  no         the head only
finelast   the pretrained run  no         the last residual block + head
scratch    random weights      no         everything
=========  ==================  =========  =============================================

Everything not trained is left out of the optimizer's variable list, so it is
never written: the backbone a PeterRec task reads stays bit-identical and can
be shared by every task.
"""

PETERREC = "peterrec"
FINEALL = "fineall"
FINECLS = "finecls"
FINELAST = "finelast"
SCRATCH = "scratch"
METHODS = (PETERREC, FINEALL, FINECLS, FINELAST, SCRATCH)


def uses_patches(method):
    return method == PETERREC


def starts_from_pretrained(method):
    return method != SCRATCH


def trainable_variables(method, task_model, train_layer_norms=True):
    """The variables ``method`` trains in ``task_model`` (a built ``TaskModel``).

    Args:
        method: one of ``METHODS``.
        task_model: a built ``TaskModel``.
        train_layer_norms: PeterRec only: also train the encoder's LayerNorms
            (the authors' code trains one; they are a few hundred numbers).
    """
    encoder, head = task_model.encoder, task_model.head
    if method == PETERREC:
        chosen = list(encoder.patch_variables()) + list(head.trainable_variables)
        if train_layer_norms:
            chosen += list(encoder.layer_norm_variables())
        return chosen
    if method == FINECLS:
        return list(head.trainable_variables)
    if method == FINELAST:
        return list(encoder.blocks[-1].trainable_variables) + list(head.trainable_variables)
    if method in (FINEALL, SCRATCH):
        return list(task_model.trainable_variables)
    raise ValueError(f"unknown fine-tuning method {method!r}; expected one of {METHODS}")


def parameter_count(variables):
    """Number of numbers in ``variables``."""
    total = 0
    for variable in variables:
        size = 1
        for dimension in variable.shape:
            size *= int(dimension)
        total += size
    return total
