"""PeterRec's baselines (Yuan et al., SIGIR 2020): what each trains, nothing inserted.

=========  ==================  =============================================
method     starts from         trains
=========  ==================  =============================================
fineall    the pretrained run  everything
finecls    the pretrained run  the head only
finelast   the pretrained run  the last residual block + head
scratch    random weights      everything
=========  ==================  =============================================

"The head" includes a learned readout (``--readout=attention``), which is part
of every task's own parameters. Everything not trained is left out of the optimizer's variable list, so it is
never written.
"""

from model.methods.method import Method


class FineAll(Method):
    name = "fineall"
    summary = "everything trains"


class FineCls(Method):
    name = "finecls"
    summary = "the head (and an attention readout) trains"

    def trainable_variables(self, task_model, description):
        return task_model.output_variables()


class FineLast(Method):
    name = "finelast"
    summary = "the last residual block + head (+ an attention readout) train"

    def trainable_variables(self, task_model, description):
        return (list(task_model.encoder.blocks[-1].trainable_variables)
                + task_model.output_variables())


class Scratch(Method):
    name = "scratch"
    summary = "everything trains from random weights"
    starts_from_pretrained = False
