"""The audit's words in English and Chinese, and the model card it writes.

Kept apart from the measuring code so a reviewer can read (and a translator can fix) every sentence the
audit may print in one place. Both languages must have the same keys (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

Lang = Literal["en", "zh"]

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "taskfit audit: {}",
        "h_provenance": "Data provenance", "h_pii": "Personal data", "h_privacy": "Differential privacy",
        "h_robustness": "Robustness", "h_fairness": "Fairness", "h_explanations": "Explanations",
        "h_card": "Model card",
        "s_pass": "pass", "s_warn": "warning", "s_not_assessed": "not assessed",
        "checking": "auditing:", "skipped": "skipped on request (--skip)",
        "split": "split", "file": "file", "rows": "rows", "now": "now", "field": "field", "value": "value",
        "type": "type", "masked_count": "masked at training", "found_count": "found in the training file now",
        "unchanged": "unchanged", "changed": "CHANGED since training", "missing": "missing",
        "provenance_ok": "Every data file still has the content hash recorded at training.",
        "provenance_changed": "Data changed since training (content hash differs or file missing): {}.",
        "pii_images": "Images are not scanned for personal data.",
        "pii_masked": "Personal data was masked before training ({} items replaced by typed placeholders).",
        "pii_found": "{} personal-data items are in the training text and were NOT masked (set data.pii_mask: "
                     "true and retrain).",
        "pii_none": "No personal data found in the training text.",
        "pii_no_file": "The training file is not available to scan.",
        "dp_none": "Trained without differential privacy: no formal guarantee against membership inference "
                   "(set privacy.dp to train with DP-SGD).",
        "dp_spent": "DP-SGD spent ε = {:.3f} at δ = {:.1e} (target ε = {:g}).",
        "running_attacks": "running the attack suite on held-out rows",
        "no_attacks": "No attack applied to this data.",
        "robust": "Worst attack {}: accuracy {:.3f} under attack vs {:.3f} clean (attack success rate {:.3f}).",
        "adv_trained": "Trained with adversarial {} (ε = {}).",
        "no_group": "No group column given (fairness.group_column in the recipe or --group-column).",
        "fair": "Groups by {}: demographic parity difference {}, equalized odds difference {}; worst group {}.",
        "fair_regression": "Groups by {}: MAE spread between groups {} ({} of the overall MAE; warning above 0.25); "
                           "worst group {}.",
        "running_explain": "explaining a sample of right and wrong predictions",
        "explained": "{} predictions explained by integrated gradients (largest convergence delta {:.2e}).",
        "card_intended": "Intended use", "card_default_use": "{task} of {kind} like the training data ({labels}).",
        "card_limits": "Limits", "card_limits_text": "Scores hold for data like the test split; check them on "
        "your own traffic before relying on the model. Outside the labels above the model has no answer.",
        "card_metrics": "Metrics", "card_groups": "Metrics per group", "card_privacy": "Privacy",
        "card_robustness": "Robustness", "card_data": "Training data", "card_training": "Training",
        "card_findings": "Audit findings", "card_no_dp": "No differential privacy.",
        "texts": "texts", "images": "images",
    },
    "zh": {
        "title": "taskfit 审计报告：{}",
        "h_provenance": "数据来源", "h_pii": "个人信息", "h_privacy": "差分隐私",
        "h_robustness": "鲁棒性", "h_fairness": "公平性", "h_explanations": "可解释性", "h_card": "模型卡",
        "s_pass": "通过", "s_warn": "警告", "s_not_assessed": "未评估",
        "checking": "审计：", "skipped": "按要求跳过（--skip）",
        "split": "数据集", "file": "文件", "rows": "行数", "now": "当前", "field": "字段", "value": "值",
        "type": "类型", "masked_count": "训练时已脱敏", "found_count": "训练文件中现存",
        "unchanged": "未变", "changed": "训练后已改变", "missing": "缺失",
        "provenance_ok": "所有数据文件的内容哈希与训练时记录一致。",
        "provenance_changed": "训练后数据已改变（哈希不同或文件缺失）：{}。",
        "pii_images": "图像不做个人信息扫描。",
        "pii_masked": "训练前已对个人信息脱敏（{} 处替换为类型占位符）。",
        "pii_found": "训练文本中有 {} 处个人信息未脱敏（请设置 data.pii_mask: true 并重新训练）。",
        "pii_none": "训练文本中未发现个人信息。",
        "pii_no_file": "训练文件不可用，无法扫描。",
        "dp_none": "训练未使用差分隐私：对成员推断攻击没有形式化保证（设置 privacy.dp 以使用 DP-SGD）。",
        "dp_spent": "DP-SGD 实际花费 ε = {:.3f}，δ = {:.1e}（目标 ε = {:g}）。",
        "running_attacks": "在保留数据上运行攻击测试",
        "no_attacks": "没有适用于该数据的攻击。",
        "robust": "最强攻击 {}：攻击下准确率 {:.3f}，原始 {:.3f}（攻击成功率 {:.3f}）。",
        "adv_trained": "训练时使用了对抗训练 {}（ε = {}）。",
        "no_group": "未指定分组列（配方中的 fairness.group_column 或 --group-column）。",
        "fair": "按 {} 分组：人口均等差 {}，均等几率差 {}；最差组 {}。",
        "fair_regression": "按 {} 分组：各组 MAE 之差 {}（为总体 MAE 的 {}；超过 0.25 即警告）；最差组 {}。",
        "running_explain": "解释部分正确和错误的预测",
        "explained": "用积分梯度解释了 {} 个预测（最大收敛误差 {:.2e}）。",
        "card_intended": "预期用途", "card_default_use": "对与训练数据相似的{kind}做{task}（{labels}）。",
        "card_limits": "局限", "card_limits_text": "指标只对与测试集相似的数据成立；上线前请在真实流量上核验。"
        "模型无法给出上述标签之外的答案。",
        "card_metrics": "指标", "card_groups": "分组指标", "card_privacy": "隐私", "card_robustness": "鲁棒性",
        "card_data": "训练数据", "card_training": "训练", "card_findings": "审计结论",
        "card_no_dp": "未使用差分隐私。", "texts": "文本", "images": "图像",
    },
}


def _metric_table(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(k for m in metrics.values() for k, v in m.items() if isinstance(v, float)))
    if not keys:
        return []
    lines = ["| split | " + " | ".join(keys) + " | rows |", "|---|" + "---|" * (len(keys) + 1)]
    for split, m in metrics.items():
        cells = [f"{m[k]:.4f}" if isinstance(m.get(k), float) else "" for k in keys]
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {m.get('n', '')} |")
    return lines


def model_card_markdown(meta: Mapping[str, Any], results: Mapping[str, Any], findings: Sequence[Any],
                        lang: Lang = "en", intended_use: str | None = None) -> str:
    """The model card: intended use, limits, metrics (overall and per group), privacy, robustness, data,
    training and the audit's findings, in Markdown."""
    t = MESSAGES[lang]
    labels = meta.get("labels") or []
    kind = t["images"] if meta.get("task") == "image_classification" else t["texts"]
    use = intended_use or t["card_default_use"].format(task=meta.get("task"), kind=kind,
                                                       labels=", ".join(map(str, labels[:20])) or "-")
    by_key = {f.key: f for f in findings}
    lines = [f"# {t['h_card']}: {meta.get('task')} / {meta.get('base_model')}", "",
             f"## {t['card_intended']}", "", use, "", f"## {t['card_limits']}", "", t["card_limits_text"], "",
             f"## {t['card_metrics']}", "", *_metric_table(meta.get("metrics") or {}), ""]
    fair = by_key.get("fairness")
    groups: list[dict[str, Any]] = (fair.data.get("groups") if fair is not None else None) or []
    if groups:
        keys = [k for k in ("n", "accuracy", "macro_f1", "selection_rate", "mae", "rmse") if any(k in g for g in
                                                                                                  groups)]
        lines += [f"## {t['card_groups']}", "", "| group | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for g in groups:
            lines.append(f"| {g.get('group')} | " + " | ".join(
                f"{g[k]:.4f}" if isinstance(g.get(k), float) else str(g.get(k, "")) for k in keys) + " |")
        lines.append("")
    dp = results.get("privacy")
    lines += [f"## {t['card_privacy']}", "",
              t["dp_spent"].format(dp["epsilon_spent"], dp["delta"], dp["epsilon_target"]) if dp
              else t["card_no_dp"], ""]
    rob = by_key.get("robustness")
    if rob is not None and rob.status != "not assessed":
        lines += [f"## {t['card_robustness']}", "", rob.verdict, ""]
    timing = results.get("timing") or {}
    method = (meta.get("method") or {}).get("name")
    lines += [f"## {t['card_training']}", "",
              f"- {meta.get('base_model')}, {method}, {timing.get('steps', '?')} steps, "
              f"{timing.get('precision', meta.get('precision', '?'))} on {timing.get('device', '?')}", "",
              f"## {t['card_data']}", ""]
    for split, d in (meta.get("data") or {}).items():
        lines.append(f"- {split}: `{d['file']}` ({d['rows']} rows, sha256 {str(d['sha256'])[:12]}…)")
    lines += ["", f"## {t['card_findings']}", ""]
    for f in findings:
        lines.append(f"- **{t['h_' + f.key]}** ({t['s_' + f.status.replace(' ', '_')]}): {f.verdict}")
    return "\n".join(lines) + "\n"
