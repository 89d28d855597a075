"""A scorer of one's own for prorl: ``reward.custom={word_count: word_count:score}``.

Problems of the domain ``word_count`` ask for a text of ``metadata.words`` words; the reward is 1 for exactly that
many, falling linearly to 0 at twice as many (or none). The function gets the answer region of the response (the
text after ``</think>`` when there is one), runs in prorl's scoring pool with its deadline, and any exception it
raises costs that one sample (score 0, status "error").

    prorl demo    # writes a warm-started tiny model (runs/demo/warm) and its run's config (runs/demo/run)
    PYTHONPATH=examples/custom_reward prorl train runs/demo/run/config.yaml run_dir=runs/word_count \\
        model.path=runs/demo/warm data.builtin=null data.train_files=examples/custom_reward/problems.jsonl \\
        data.val_fraction=0.2 'reward.custom={word_count: "word_count:score"}' train.steps=20
"""

from prorl.verifiers import Verdict


def score(problem, response: str) -> Verdict:
    want = int(problem.metadata["words"])
    got = len(response.split())
    value = max(0.0, 1.0 - abs(got - want) / want)
    return Verdict(value, f"{got} words, asked for {want}")
