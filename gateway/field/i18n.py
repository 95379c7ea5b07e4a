"""UI strings of the field engineer's commands, in English and Chinese.

One table, one key per message, both languages side by side: a message that
exists in one language only is caught by tests/cli/test_views.py, and a
translator sees the English next to the Chinese. Messages take named
arguments (str.format), so the daemon can hand back a language-neutral
(key, args) and the CLI words it in the engineer's language.
"""
from __future__ import annotations

import os

from .visit_strings import VISIT

LANGS = ("en", "zh")

S: dict[str, tuple[str, str]] = {
    # -- words ----------------------------------------------------------------
    "fail": ("FAIL", "失败"),
    "warn": ("WARN", "警告"),
    "pass": ("PASS", "通过"),
    "none": ("none", "无"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
    "online": ("online", "在线"),
    "unavailable": ("unavailable", "离线"),
    "unknown": ("unknown", "未知"),
    "never": ("never", "从未"),
    "connected": ("connected", "已连接"),
    "disconnected": ("disconnected", "未连接"),
    "synced": ("synchronised", "已同步"),
    "not_synced": ("not synchronised", "未同步"),
    "sev.critical": ("critical", "紧急"),
    "sev.major": ("major", "严重"),
    "sev.minor": ("minor", "一般"),
    "sev.info": ("info", "提示"),
    "raised": ("raised", "发生"),
    "cleared": ("cleared", "恢复"),
    "holding": ("holding", "保持寄存器"),
    "input": ("input", "输入寄存器"),

    # -- ages -----------------------------------------------------------------
    "age.s": ("{s} s", "{s}秒"),
    "age.fs": ("{s:.1f} s", "{s:.1f}秒"),
    "age.m": ("{m} min", "{m}分钟"),
    "age.hm": ("{h} h {m} min", "{h}小时{m}分"),
    "age.dh": ("{d} d {h} h", "{d}天{h}小时"),
    "ago": ("{age} ago", "{age}前"),

    # -- status -----------------------------------------------------------------
    "st.title": ("edgegw status: gateway {gw}{site}, {ts}", "edgegw 状态：网关 {gw}{site}，{ts}"),
    "st.down_title": ("DAEMON NOT RUNNING", "守护进程未运行"),
    "st.recorded": ("showing what the daemon last recorded in {path} ({when})",
                    "以下为守护进程最后记录在 {path} 中的状态（{when}）"),
    "st.no_record": ("the daemon has recorded no state in {path}",
                     "守护进程未在 {path} 中记录任何状态"),
    "st.problems": ("PROBLEMS ({n})", "问题（{n}）"),
    "st.no_problems": ("PROBLEMS: none", "问题：无"),
    "st.gateway": ("GATEWAY", "网关"),
    "st.devices": ("DEVICES", "设备"),
    "st.daemon": ("daemon", "守护进程"),
    "st.broker": ("broker", "MQTT服务器"),
    "st.clock": ("clock", "时钟"),
    "st.backlog": ("backlog", "积压"),
    "st.dropped": ("dropped", "已丢弃"),
    "st.store": ("store", "存储"),
    "st.bus": ("bus", "总线"),
    "st.daemon_up": ("running (pid {pid}), up {up}, version {version}",
                     "运行中（pid {pid}），已运行 {up}，版本 {version}"),
    "st.daemon_down": ("not running ({why})", "未运行（{why}）"),
    "st.no_answer": ("no answer on {sock}", "{sock} 无应答"),
    "ok_word": ("ok", "正常"),
    "st.broker_up": ("{where} connected, {n} connect(s)", "{where} 已连接，累计连接 {n} 次"),
    "st.broker_down": ("{where} NOT connected{err}", "{where} 未连接{err}"),
    "st.backlog_v": ("{n} messages ({size}), oldest {age}, {inflight} in flight",
                     "{n} 条消息（{size}），最早 {age}，发送中 {inflight} 条"),
    "st.dropped_v": ("telemetry {telemetry}, state {state}, events {event} (since the outbox was created)",
                     "遥测 {telemetry}，状态 {state}，事件 {event}（自缓存创建以来）"),
    "st.bus_v": ("{name}: {conn}, {requests} requests, {timeouts} timeouts, {crc} CRC errors, {exc} exceptions",
                 "{name}：{conn}，请求 {requests}，超时 {timeouts}，CRC错误 {crc}，异常响应 {exc}"),
    "col.device": ("DEVICE", "设备"),
    "col.model": ("MODEL", "型号"),
    "col.busunit": ("BUS/UNIT", "总线/地址"),
    "col.avail": ("AVAILABILITY", "可用性"),
    "col.last_good": ("LAST GOOD READ", "最后成功读取"),
    "col.age": ("AGE", "距今"),
    "col.polls": ("POLLS", "轮询"),
    "col.ok": ("OK", "成功"),
    "col.timeout": ("TIMEOUT", "超时"),
    "col.crc": ("CRC", "CRC"),
    "col.exc": ("EXC", "异常"),
    "col.bad": ("BAD VALUE", "无效值"),
    "st.fault_head": ("{code}  {sev}, since {since} ({age}), manual {ref}",
                      "{code}  {sev}，自 {since} 起（{age}），手册 {ref}"),
    "st.flapping": ("flapping: held raised until it stays clear", "频繁跳变：保持报警直至稳定恢复"),
    "st.meaning": ("meaning", "含义"),
    "st.do_first": ("do first", "首先"),
    "st.cleared_by": ("cleared by", "清除方式"),
    "st.state": ("state {code}: {meaning}", "状态 {code}：{meaning}"),
    # problems
    "pb.daemon_down": ("the daemon is not running: nothing is polled or sent",
                       "守护进程未运行：不轮询设备，也不发送数据"),
    "pb.broker_down": ("not connected to the MQTT broker {where}{err}; data waits in the outbox",
                       "未连接MQTT服务器 {where}{err}；数据暂存在本地缓存"),
    "pb.clock": ("the clock is not NTP-synchronised: timestamps go out marked ts_synced=false",
                 "系统时钟未经NTP同步：发出的时间戳标记为 ts_synced=false"),
    "pb.store": ("the outbox store is {health}: {detail}", "本地缓存状态为 {health}：{detail}"),
    "pb.event_drops": ("{n} fault events were dropped (outbox full)", "已丢弃 {n} 条故障事件（缓存已满）"),
    "pb.backlog_old": ("the oldest unsent message is {age} old", "最早的未发送消息已积压 {age}"),
    "pb.bus_down": ("bus {bus} cannot be opened: {err}", "总线 {bus} 无法打开：{err}"),
    "pb.unavailable": ("unavailable: no answer since {since} (last error: {err})",
                       "离线：自 {since} 起无应答（最后错误：{err}）"),
    "pb.never": ("has not answered since the daemon started (last error: {err})",
                 "守护进程启动后从未应答（最后错误：{err}）"),
    "pb.fault": ("{code}: {meaning} ({sev}, since {since}{due})", "{code}：{meaning}（{sev}，自 {since} 起{due}）"),
    "pb.due": (", {due}", "，{due}"),
    "pb.clock_short": ("not NTP-synchronised: timestamps go out marked ts_synced=false",
                       "未经NTP同步：时间戳标记为 ts_synced=false"),
    "pb.due_short": (" ({due})", "（{due}）"),
    "pb.unavailable_for": ("no answer for {age} (last error: {err})", "{age}无应答（最后错误：{err}）"),
    # the first thing to do about a problem that is not a catalogued fault
    "do.daemon_down": ("start it: systemctl start edgegw", "启动：systemctl start edgegw"),
    "do.diag": ("edgegw diag", "运行 edgegw diag"),
    "do.unavailable": ("check its power and the bus wiring; edgegw diag", "检查设备供电和总线接线；运行 edgegw diag"),
    "do.clock": ("check timedatectl", "检查 timedatectl"),
    # response deadlines ([service] respond_within_h)
    "st.respond_by": ("respond by", "响应时限"),
    "due.value": ("{by} (within {h} h), {state}", "{by}（{h}小时内），{state}"),
    "due.overdue": ("overdue {age}", "已超时{age}"),
    "due.left": ("{age} left", "还剩{age}"),
    # the one-screen status (field/screen.py)
    "ss.problems": ("PROBLEMS ({n}), worst first; after -> what to do first",
                    "问题（{n}），最严重的在前；-> 后为首先要做的"),
    "ss.more_problems": ("{n} more: edgegw status --all", "另有 {n} 项未显示：edgegw status --all"),
    "ss.more_devices": ("{n} more devices, without problems: edgegw status --all",
                        "另有 {n} 台设备无问题：edgegw status --all"),
    "ss.hint": ("one device: edgegw status DEVICE; everything: edgegw status --all; all steps: edgegw faults",
                "单台设备：edgegw status 设备名；全部：edgegw status --all；全部处理步骤：edgegw faults"),
    "ss.daemon": ("daemon running (pid {pid}), up {up}", "守护进程运行中（pid {pid}），已运行 {up}"),
    "ss.daemon_down": ("daemon not running ({why})", "守护进程未运行（{why}）"),
    "ss.broker": ("broker {where} connected", "MQTT服务器 {where} 已连接"),
    "ss.broker_down": ("broker {where} NOT connected{err}", "MQTT服务器 {where} 未连接{err}"),
    "ss.clock_ok": ("clock synchronised", "时钟已同步"),
    "ss.clock_bad": ("clock not synchronised", "时钟未同步"),
    "ss.backlog": ("backlog {n} messages ({size}), oldest {age}", "积压 {n} 条消息（{size}），最早 {age}"),
    "ss.dropped": ("dropped: telemetry {telemetry}, state {state}, events {event}",
                   "已丢弃：遥测 {telemetry}，状态 {state}，事件 {event}"),
    "ss.store": ("store {health}", "存储{health}"),
    "ss.bus": ("bus {name} {conn}, {timeouts} timeouts, {crc} CRC errors",
               "总线 {name} {conn}，超时 {timeouts}，CRC错误 {crc}"),
    "ss.device_title": ("edgegw status {name}: gateway {gw}{site}, {ts}", "edgegw 状态 {name}：网关 {gw}{site}，{ts}"),
    "ss.last_error": ("last error", "最后错误"),
    "ss.busunit": ("bus/unit", "总线/地址"),
    "ss.avail": ("availability", "可用性"),
    "ss.last_good": ("last good read", "最后成功读取"),
    "ss.when_ago": ("{ts} ({ago})", "{ts}（{ago}）"),
    "ss.counters": ("counters", "计数"),
    "ss.counters_v": (("{polls} polls, {ok} ok, {timeouts} timeouts, {crc} CRC errors, {exc} exceptions, "
                       "{bad} bad values"),
                      "轮询 {polls}，成功 {ok}，超时 {timeouts}，CRC错误 {crc}，异常响应 {exc}，无效值 {bad}"),
    "ss.values": ("VALUES", "数值"),

    # -- explain -----------------------------------------------------------------
    "ex.flags": ("severity {sev} | kind {kind} | valve {valve} | site visit {visit} | manual {ref} | debounce {debounce}",
                 "严重程度 {sev} | 类型 {kind} | 阀门 {valve} | 需上门 {visit} | 手册 {ref} | 去抖 {debounce}"),
    "ex.valve_closed": ("closed", "关闭"),
    "ex.valve_open": ("not closed", "未关闭"),
    "ex.kind.fault": ("fault", "故障"),
    "ex.kind.state": ("state", "状态"),
    "ex.meaning": ("Meaning", "含义"),
    "ex.causes": ("Causes (most likely first)", "可能原因（按可能性排序）"),
    "ex.remedy": ("Remedy", "处理步骤"),
    "ex.cleared_by": ("Cleared by", "清除方式"),
    "ex.trigger": ("Trigger", "触发条件"),
    "ex.no_model": ("no model {model!r}; known models: {known}", "没有型号 {model!r}；已知型号：{known}"),
    "ex.no_code": ("{model} has no fault {code!r}{hint}; its codes: {codes}",
                   "{model} 没有故障代码 {code!r}{hint}；该型号的代码：{codes}"),
    "ex.did_you_mean": (" (did you mean {m}?)", "（是否为 {m}？）"),

    # -- faults -------------------------------------------------------------------
    "fl.active": ("ACTIVE FAULTS ({n})", "当前故障（{n}）"),
    "fl.no_active": ("ACTIVE FAULTS: none", "当前故障：无"),
    "fl.history": ("HISTORY (last {n})", "历史记录（最近 {n} 条）"),
    "fl.no_history": ("HISTORY: no fault events recorded yet", "历史记录：暂无故障事件"),
    "fl.remedy": ("remedy", "处理步骤"),
    "col.time": ("TIME", "时间"),
    "col.code": ("CODE", "代码"),
    "col.event": ("EVENT", "事件"),
    "col.severity": ("SEVERITY", "严重程度"),
    "col.meaning": ("MEANING", "含义"),
    "fl.unknown_device": ("no device {name!r} in the config; devices: {known}",
                          "配置中没有设备 {name!r}；设备列表：{known}"),

    # -- scan / read --------------------------------------------------------------------
    "sc.title": ("scan of bus {bus} ({port}), units {first}-{last}", "扫描总线 {bus}（{port}），地址 {first}-{last}"),
    "sc.progress": ("unit {unit}  {done}/{total}  found {found}  about {eta} left",
                    "地址 {unit}  {done}/{total}  已发现 {found}  剩余约 {eta}"),
    "col.unit": ("UNIT", "地址"),
    "col.identified": ("IDENTIFIED BY", "识别依据"),
    "col.configured": ("CONFIGURED AS", "配置名称"),
    "col.response": ("RESPONSE", "响应时间"),
    "sc.unknown_model": ("answers; model not recognised", "有应答；型号无法识别"),
    "sc.not_configured": ("(not configured)", "（未配置）"),
    "sc.summary": ("{n} of {total} units answered in {elapsed}", "{total} 个地址中有 {n} 个应答，用时 {elapsed}"),
    "sc.none": ("no unit answered: check wiring (A/B swapped?), baud rate, parity and termination",
                "没有设备应答：检查接线（A/B是否接反）、波特率、校验位和终端电阻"),
    "via.daemon": ("through the daemon", "经由守护进程"),
    "via.direct": ("daemon not running: opened {port} directly", "守护进程未运行：已直接打开 {port}"),
    "via.direct_idle": ("the daemon does not poll bus {bus}: opened {port} directly",
                        "守护进程未轮询总线 {bus}：已直接打开 {port}"),
    "rd.title": ("bus {bus} unit {unit}: {function} registers {first}-{last}", "总线 {bus} 地址 {unit}：{function} {first}-{last}"),
    "rd.failed": ("no registers: {why}", "未读到寄存器：{why}"),
    "col.addr": ("ADDRESS", "地址"),
    "col.hex": ("HEX", "十六进制"),
    "col.dec": ("UINT16", "UINT16"),
    "col.int16": ("INT16", "INT16"),
    "col.ascii": ("ASCII", "ASCII"),
    "rd.decoded": ("decoded from address {addr} ({n} registers), every type in every order:",
                   "从地址 {addr} 起解码（{n} 个寄存器），所有类型与字节序："),
    "col.type": ("TYPE", "类型"),
    "rd.bad": ("invalid", "无效"),

    # -- watch -------------------------------------------------------------------------
    "wt.title": ("edgegw watch: {n} device(s), Ctrl-C to stop", "edgegw 实时监视：{n} 台设备，Ctrl-C 退出"),
    "col.values": ("VALUES", "数值"),
    "col.read": ("READ", "读取"),
    "col.faults": ("FAULTS / STATES", "故障/状态"),
    "wt.lost": ("({n} updates skipped: terminal too slow)", "（跳过 {n} 次更新：终端过慢）"),

    # -- diag ------------------------------------------------------------------------------
    "dg.title": ("edgegw diag: gateway {gw}, {ts}", "edgegw 自检：网关 {gw}，{ts}"),
    "dg.config_ok": ("{path} is valid", "{path} 有效"),
    "dg.config_bad": ("{path} has {n} problem(s), first: {first}", "{path} 有 {n} 个问题，第一个：{first}"),
    "dg.config_changed": ("{path} is valid but changed after the daemon started: restart to apply it",
                          "{path} 有效，但在守护进程启动后被修改：需重启才能生效"),
    "dg.daemon_up": ("running (pid {pid}), up {up}", "运行中（pid {pid}），已运行 {up}"),
    "dg.loop": ("event loop lag over {window}: p50 {p50} ms, p99 {p99} ms, p99.9 {p999} ms, max {max} ms",
                "事件循环延迟（最近 {window}）：p50 {p50} 毫秒，p99 {p99} 毫秒，p99.9 {p999} 毫秒，最大 {max} 毫秒"),
    "dg.loop_slow": ("event loop held up: p99.9 {p999} ms over {window} (max {max} ms): polls and MQTT wait behind it; "
                     "see the log for what ran long",
                     "事件循环受阻：最近 {window} p99.9 为 {p999} 毫秒（最大 {max} 毫秒），轮询和MQTT都在等待；查看日志中耗时的操作"),
    "dg.daemon_down": ("not running: checks below are made from this shell", "未运行：以下检查由当前命令直接执行"),
    "dg.port_tcp": ("{where} (Modbus TCP, checked by the bus statistics)", "{where}（Modbus TCP，见总线统计）"),
    "dg.port_missing": ("{port} does not exist: adapter unplugged, or wrong name (ls -l /dev/serial/by-id/)",
                        "{port} 不存在：USB转485未插好或名称错误（ls -l /dev/serial/by-id/）"),
    "dg.port_byid": ("{port} -> {real}", "{port} -> {real}"),
    "dg.port_plain": ("{port} present; its stable name is {byid}: use that in the config (ttyUSB numbers can swap after a reboot)",
                      "{port} 存在；其固定名称为 {byid}：请在配置中使用该名称（重启后ttyUSB编号可能互换）"),
    "dg.port_nobyid": ("{port} present (no /dev/serial/by-id name)", "{port} 存在（无 /dev/serial/by-id 名称）"),
    "dg.port_noaccess": ("{port} present but not readable and writable by this user", "{port} 存在，但当前用户无读写权限"),
    "dg.broker_ok": ("{where} accepted MQTT CONNECT{who} in {ms} ms", "{where} 接受了MQTT连接{who}，用时 {ms} 毫秒"),
    "dg.broker_who": (" as {user}", "（用户 {user}）"),
    "dg.broker_refused": ("{where} refused MQTT CONNECT: {why}", "{where} 拒绝了MQTT连接：{why}"),
    "dg.broker_unreachable": ("{where} unreachable: {why}", "无法连接 {where}：{why}"),
    "dg.tls_ok": ("{what} certificate valid until {until}, {days} days left", "{what}证书有效期至 {until}，剩余 {days} 天"),
    "dg.tls_soon": ("{what} certificate expires {until}, only {days} days left: renew it",
                    "{what}证书将于 {until} 过期，仅剩 {days} 天：请更新"),
    "dg.tls_expired": ("{what} certificate expired on {until}", "{what}证书已于 {until} 过期"),
    "dg.tls_bad": ("{what} certificate: {why}", "{what}证书：{why}"),
    "dg.tls_broker": ("broker", "服务器"),
    "dg.tls_client": ("client", "客户端"),
    "dg.clock_ok": ("synchronised (NTP)", "已同步（NTP）"),
    "dg.clock_bad": ("not synchronised: timestamps go out marked ts_synced=false (check timedatectl)",
                     "未同步：时间戳标记为 ts_synced=false（检查 timedatectl）"),
    "dg.disk": ("{path}: {free} free of {total} ({pct}%)", "{path}：可用 {free}，共 {total}（{pct}%）"),
    "dg.backlog": ("{n} messages waiting ({size}), oldest {age}, dropped {dropped}",
                   "{n} 条消息待发送（{size}），最早 {age}，已丢弃 {dropped}"),
    "dg.backlog_store": ("outbox store is {health}: {detail}", "本地缓存状态为 {health}：{detail}"),
    "dg.backlog_file": ("daemon not running; outbox file {size}", "守护进程未运行；缓存文件 {size}"),
    "dg.bus": ("{requests} requests, {timeouts} timeouts, {crc} CRC errors, {mismatch} answers not to the request, "
               "{exc} exceptions, mean {mean} ms, p95 {p95} ms",
               "请求 {requests}，超时 {timeouts}，CRC错误 {crc}，应答与请求不符 {mismatch}，异常响应 {exc}，"
               "平均 {mean} 毫秒，p95 {p95} 毫秒"),
    "dg.bus_down": ("cannot be opened: {err}", "无法打开：{err}"),
    "dg.bus_offline": ("no statistics: the daemon is not running", "无统计数据：守护进程未运行"),
    "dg.bus_idle": ("no statistics: no device is configured on this bus", "无统计数据：该总线未配置设备"),
    "dg.dev_ok": ("online, no errors", "在线，无错误"),
    "dg.dev_ok_err": ("online; last error {err} at {ts}", "在线；最后错误 {err}，时间 {ts}"),
    "dg.dev_down": ("unavailable; last error {err} at {ts}", "离线；最后错误 {err}，时间 {ts}"),
    "dg.dev_unknown": ("not polled yet", "尚未轮询"),
    "dg.recorded": (" (as last recorded)", "（最后记录）"),
    "dg.verdict_ok": ("verdict: all {n} checks passed", "结论：全部 {n} 项检查通过"),
    "dg.verdict_warn": ("verdict: no failures, {w} warning(s); first: {first}", "结论：无失败，{w} 项警告；首项：{first}"),
    "dg.verdict_fail": ("verdict: {f} failure(s), {w} warning(s); start with: {first}",
                        "结论：{f} 项失败，{w} 项警告；请先处理：{first}"),
    "dg.check.config": ("config", "配置"),
    "dg.check.daemon": ("daemon", "守护进程"),
    "dg.check.loop": ("event loop", "事件循环"),
    "dg.check.port": ("port {bus}", "串口 {bus}"),
    "dg.check.broker": ("broker", "MQTT服务器"),
    "dg.check.tls": ("tls", "TLS"),
    "dg.check.clock": ("clock", "时钟"),
    "dg.check.disk": ("disk", "磁盘"),
    "dg.check.backlog": ("backlog", "积压"),
    "dg.check.bus": ("bus {bus}", "总线 {bus}"),
    "dg.check.device": ("{device}", "{device}"),

    # -- config check -------------------------------------------------------------------------
    "cc.title": ("config check: {path}", "配置检查：{path}"),
    "cc.ok": ("verdict: valid, the daemon will start with this file", "结论：有效，守护进程可使用此文件启动"),
    "cc.bad": ("verdict: {n} problem(s); the daemon refuses to start until all are fixed",
               "结论：{n} 个问题；全部修正前守护进程拒绝启动"),

    # -- errors of the commands themselves -------------------------------------------------------
    "er.no_config": ("cannot use {path}: {why} (give the site config with --config)",
                     "无法使用 {path}：{why}（请用 --config 指定站点配置）"),
    "er.config_bad": ("{path} has {n} problem(s); run: edgegw config check {path}",
                      "{path} 有 {n} 个问题；请运行：edgegw config check {path}"),
    "er.daemon_down": ("the daemon is not running (no answer on {sock})", "守护进程未运行（{sock} 无应答）"),
    "er.denied": ("cannot reach the daemon at {sock}: permission denied; add yourself to group edgegw or use sudo",
                  "无法连接守护进程 {sock}：权限不足；请加入 edgegw 组或使用 sudo"),
    "er.daemon_error": ("the daemon answered: {err}", "守护进程返回错误：{err}"),
    "er.daemon_busy": ("the daemon is busy ({err}); try again in a moment",
                       "守护进程繁忙（{err}），请稍后再试"),
    "er.no_bus": ("no bus {bus!r} in the config; buses: {known}", "配置中没有总线 {bus!r}；总线列表：{known}"),
    "er.units": ("bad --units {units!r}: expected FIRST-LAST within 1-247", "--units {units!r} 无效：应为 1-247 范围内的 起-止"),
    "er.port": ("cannot open {port}: {why}", "无法打开 {port}：{why}"),
    "er.watch_needs_daemon": ("watch needs the running daemon", "实时监视需要守护进程运行"),
    "er.state_unreadable": ("cannot read {path}: {why}", "无法读取 {path}：{why}"),
}

# The visit record's own words (field/visit_strings.py), kept beside it.
S.update(VISIT)


def norm(lang: str | None) -> str | None:
    """"zh", "zh_CN.UTF-8", "zh-Hans" -> "zh"; "en*" -> "en"; anything else None."""
    if not lang:
        return None
    low = str(lang).lower()
    if low.startswith("zh"):
        return "zh"
    if low.startswith("en"):
        return "en"
    return None


def env_lang() -> str | None:
    """The login's locale, for commands that run without a config (explain)."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        got = norm(os.environ.get(var))
        if got:
            return got
    return None


def t(lang: str, key: str, **kw) -> str:
    en, zh = S[key]
    text = zh if lang == "zh" else en
    return text.format(**kw) if kw else text


def age(seconds: float | None, lang: str) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return t(lang, "age.s", s=s)
    if s < 3600:
        return t(lang, "age.m", m=s // 60)
    if s < 86400:
        return t(lang, "age.hm", h=s // 3600, m=(s % 3600) // 60)
    return t(lang, "age.dh", d=s // 86400, h=(s % 86400) // 3600)


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
