"""``GRPOTrainer`` whose forward passes see each episode's pictures.

With a rollout function, TRL's trainer takes pixels only from a dataset column, while an MCR
episode's pictures come from its context (the overview's frames, frames a tool returned). The
rollout keeps each episode's processor tensors under the key of its token sequence; the
log-probability pass finds them there and runs that sequence with them, one sequence at a
time. Sequences without pictures go through TRL's own pass.
"""

from __future__ import annotations

from typing import Any

from trl import GRPOTrainer

from .episode import sequence_key


class EpisodeTrainer(GRPOTrainer):
    episodes: Any = None

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **kwargs,
    ):
        import torch

        media = getattr(self.episodes, "media", None) or {}
        found = [media.get(sequence_key(ids[m.bool()].tolist())) for ids, m in zip(input_ids, attention_mask)]
        if not any(found):
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                **kwargs,
            )
        logps, entropies, aux = [], [], []
        device = input_ids.device
        for i, pictures in enumerate(found):
            # the prompt's left padding is dropped (multimodal positions count from the first token)
            start = int(attention_mask[i].nonzero()[0]) if pictures else 0
            ids, mask = input_ids[i : i + 1, start:], attention_mask[i : i + 1, start:]
            inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            for key, value in (pictures or {}).items():
                value = value.to(device)
                if key == "mm_token_type_ids":  # the processor's covers the last prompt: the rest is text
                    value = torch.nn.functional.pad(value, (0, ids.shape[1] - value.shape[1]))
                inputs[key] = value
            if compute_aux_loss:
                inputs["output_router_logits"] = True
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                outputs = model(**inputs, labels=labels, fused_lm_head=True)
            logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                aux.append(outputs.aux_loss)
        return (
            torch.cat(logps, dim=0),
            torch.cat(entropies, dim=0) if compute_entropy else None,
            torch.stack(aux).mean() if compute_aux_loss else None,
        )
