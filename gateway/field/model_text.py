"""UI strings of the model commands and of what other commands say about
models (explain, diag, config check), in English and Chinese.

Kept beside i18n.py's table and added to it on import, in its form (one key,
both languages, named arguments), so `t()` words them and tests/cli's
both-languages check covers them. A key i18n.py itself defines wins.
"""
from __future__ import annotations

from . import i18n

S: dict[str, tuple[str, str]] = {
    # -- edgegw model list ---------------------------------------------------------------
    "md.title": ("models in effect: {n}; site model folder: {dir}", "生效型号：{n} 个；现场型号目录：{dir}"),
    "md.dir_absent": ("(not there: packaged models only)", "（目录不存在：仅使用出厂型号）"),
    "md.col.id": ("MODEL", "型号"),
    "md.col.name": ("NAME", "名称"),
    "md.col.family": ("FAMILY", "类别"),
    "md.col.params": ("PARAMS", "参数"),
    "md.col.source": ("FILE", "文件"),
    "md.packaged": ("packaged", "出厂"),
    "md.site": ("{path} (site)", "{path}（现场）"),
    "md.site_repl": ("{path} (site, replaces the packaged one)", "{path}（现场，替换出厂型号）"),
    "md.broken_title": ("BROKEN MODEL FILES ({n}): not used; a device configured with one stops the daemon "
                        "from starting",
                        "有问题的型号文件（{n}）：不会使用；配置了该型号的设备会使守护进程拒绝启动"),
    "md.broken": ("{id}: {path}: {n} problem(s), the first: {first}",
                  "{id}：{path}：{n} 个问题，第一个：{first}"),
    "md.broken_hint": ("every problem of a file: edgegw model check FILE",
                       "查看文件的全部问题：edgegw model check 文件"),
    "md.dir_bad": ("site model folder: {why}", "现场型号目录：{why}"),

    # -- edgegw model check --------------------------------------------------------------
    "mc.title": ("model check: {path}", "型号检查：{path}"),
    "mc.ok": ("verdict: valid; model {id} can go in the site model folder",
              "结论：有效；型号 {id} 可放入现场型号目录"),
    "mc.ok_repl": ("verdict: valid; in the site model folder it replaces the packaged model {id}",
                   "结论：有效；放入现场型号目录后替换出厂型号 {id}"),
    "mc.bad": ("verdict: {n} problem(s); the gateway does not use this file until all are fixed",
               "结论：{n} 个问题；全部修正前网关不会使用此文件"),

    # -- edgegw config check: broken model files -----------------------------------------
    "cc.warnings": ("{n} warning(s): model files with problems; a device that uses one fails the check",
                    "{n} 条警告：型号文件有问题；使用该型号的设备不能通过检查"),

    # -- edgegw explain --------------------------------------------------------------------
    "ex.params": ("Site params ([device.params])", "现场参数（[device.params]）"),
    "ex.param": ("{name}: default {default}, allowed {range}. {meaning}",
                 "{name}：默认 {default}，允许范围 {range}。{meaning}"),
    "ex.param_off": ("{name}: no default, off until the site sets it; allowed {range}. {meaning}",
                     "{name}：无默认值，现场设定前不启用；允许范围 {range}。{meaning}"),
    "ex.range": ("{lo} to {hi}{unit}", "{lo} 至 {hi}{unit}"),
    "ex.source": ("model file: {path} (site model folder)", "型号文件：{path}（现场型号目录）"),
    "ex.source_repl": ("model file: {path} (site model folder, replaces the packaged model)",
                       "型号文件：{path}（现场型号目录，替换出厂型号）"),
    "ex.broken_model": ("model {model!r} cannot be used: {path} has {n} problem(s), the first: {first}; "
                        "run: edgegw model check {path}",
                        "型号 {model!r} 无法使用：{path} 有 {n} 个问题，第一个：{first}；"
                        "请运行：edgegw model check {path}"),

    # -- edgegw diag -----------------------------------------------------------------------
    "dg.check.models": ("models", "型号"),
    "dg.models_site": ("{n} models in effect; from the site folder: {files}",
                       "生效型号 {n} 个；来自现场型号目录：{files}"),
    "dg.models_site_repl": ("{n} models in effect; from the site folder: {files}; replacing packaged: {replaced}",
                            "生效型号 {n} 个；来自现场型号目录：{files}；替换出厂型号：{replaced}"),
    "dg.models_broken": ("model file {path}: {n} problem(s), the first: {first}; not used, and a device "
                         "configured with it stops the daemon; run: edgegw model check {path}",
                         "型号文件 {path}：{n} 个问题，第一个：{first}；不会使用，配置了该型号的设备会使"
                         "守护进程拒绝启动；请运行：edgegw model check {path}"),
    "dg.models_dir_bad": ("site model folder: {why}", "现场型号目录：{why}"),
}

for _key, _text in S.items():
    i18n.S.setdefault(_key, _text)
