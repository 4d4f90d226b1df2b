extends "scenario.gd"
## The connection against peers that are not the daemon, played by Python TCP servers whose
## ports tests/test_godot_connection.py passes (no daemon: [code]--port=0[/code]). A line said
## offline ends at once. Peers that are not a ZMTP ROUTER ([code]--http[/code],
## [code]--plain[/code], [code]--pub[/code], [code]--early_message[/code],
## [code]--bad_command[/code]) are reported once while the addon keeps retrying; an ERROR
## command ([code]--error[/code]) is fatal; a silent peer ([code]--silent[/code]) times out and
## is retried; a closed port ([code]--closed[/code]) is retried with a doubling back-off. A
## scripted ROUTER ([code]--router[/code]) trickles a valid handshake and messages (a PING
## inside one), receives lines of each priority, a line typed key by key into a [LineEdit]
## attached to an NPC (debounced [code]typing[/code] messages, then the [code]say[/code]) and a
## microphone stream, then falls silent: the addon pings it, then drops it. Back-off, timeouts
## and heartbeats are shortened (white box) so that all this takes seconds.

#region Constants
const ZmtpConnection := preload("res://addons/npc_voice/zmtp_connection.gd")
## Peers that are not a ZMTP ROUTER.
const NOT_ROUTERS: Array[String] = ["http", "plain", "pub", "early_message", "bad_command"]
## Longest wait for one step (each takes well under a second; a failure should not take the
## default 90 s per step).
const STEP_TIMEOUT_S: float = 30.0
## Failed attempts to see against each of them.
const RETRIES: int = 3
## Reconnect delays to record against the closed port.
const CLOSED_PORT_DELAYS: int = 5
## Microphone blocks to stream to the scripted ROUTER.
const MIC_BLOCKS: int = 3
## The lines said to the scripted ROUTER: NPC and [code]priority[/code] option ("": none).
const LINES: Dictionary = {"smith": "ambient", "guard": "normal", "baker": "", "bard": "high"}
#endregion

#region Private Variables
var _connection: ZmtpConnection = null
var _frame_sizes: Array[PackedInt32Array] = []
#endregion


#region Public Functions
func run() -> void:
	_connection = NpcVoice._connection
	NpcVoice.disconnect_from_daemon()  # the autoload may have found something on port 5557
	_connection.backoff_min_ms = 10
	_connection.backoff_max_ms = 40
	_connection.connect_timeout_ms = 500
	var offline: int = NpcVoice.say("blacksmith", "Anyone there?")
	report("case", {"name": "offline", "turn_id": offline})
	await wait_for_event("speech_finished", offline)
	for peer: String in NOT_ROUTERS:
		var since: int = _connect_to(peer)
		var retried: Callable = func() -> bool: return _connection.attempt >= RETRIES
		await wait_until(retried, peer + " retried", STEP_TIMEOUT_S)
		_report_peer(peer, since, {})
	await _refusing()
	await _silent()
	await _closed_port()
	await _router()


#endregion


#region Private Functions
## Connects the autoload to the peer [param peer]; returns the number of events so far.
func _connect_to(peer: String) -> int:
	var since: int = events.size()
	NpcVoice.port = int(args[peer])
	NpcVoice.connect_to_daemon()
	return since


## Reports [param peer] with the errors since event [param since], then disconnects.
func _report_peer(peer: String, since: int, fields: Dictionary) -> void:
	var errors: Array[String] = []
	for item: Dictionary in events.slice(since):
		if item["event"] == "error_received":
			errors.append("%s: %s" % [item["code"], item["message"]])
	fields.merge({"name": peer, "attempts": _connection.attempt, "errors": errors})
	report("peer", fields)
	NpcVoice.disconnect_from_daemon()


func _refusing() -> void:
	var since: int = _connect_to("error")
	var failed: Callable = func() -> bool: return _connection.state == ZmtpConnection.State.FAILED
	var ended: Callable = func() -> bool: return failed.call() or _connection.attempt > 0
	await wait_until(ended, "the refusal", STEP_TIMEOUT_S)
	for i: int in 10:  # a retry would go out within these frames (10 ms back-off)
		await get_tree().process_frame
	_report_peer("error", since, {"failed": failed.call()})


func _silent() -> void:
	var since: int = _connect_to("silent")
	var handshaking: Callable = func() -> bool:
		return _connection.state == ZmtpConnection.State.HANDSHAKING
	await wait_until(handshaking, "the greeting sent to the silent peer", STEP_TIMEOUT_S)
	report("handshaking", {"attempts": _connection.attempt})
	var retried: Callable = func() -> bool: return _connection.attempt >= 2
	await wait_until(retried, "retries after handshake timeouts", STEP_TIMEOUT_S)
	_report_peer("silent", since, {})


## A connection of its own, polled here: the delay scheduled by a poll is reported as the
## range [code][retry time - time after the poll, retry time - time before it][/code].
func _closed_port() -> void:
	var probe := ZmtpConnection.new()
	probe.backoff_min_ms = 10
	var delays: Array[PackedInt32Array] = []
	var errors: Array[String] = []
	probe.protocol_failed.connect(func(reason: String, _fatal: bool) -> void: errors.append(reason))
	probe.connect_to("127.0.0.1", int(args["closed"]))
	var poll_and_note: Callable = func() -> bool:
		var before: int = Time.get_ticks_msec()
		probe.poll()
		var after: int = Time.get_ticks_msec()
		if probe.attempt > delays.size():
			delays.append(
				PackedInt32Array([probe._retry_at_ms - after, probe._retry_at_ms - before])
			)
		return delays.size() >= CLOSED_PORT_DELAYS
	await wait_until(poll_and_note, "retries of a closed port", STEP_TIMEOUT_S)
	probe.close()
	var ranges: Array[Array] = []
	for delay: PackedInt32Array in delays:
		ranges.append(Array(delay))
	report("peer", {"name": "closed", "delays_ms": ranges, "errors": errors})


func _router() -> void:
	_connection.connect_timeout_ms = 20000  # the handshake trickles in
	_connection.heartbeat_ivl_ms = 200
	_connection.heartbeat_timeout_ms = 2000
	_connection.message_received.connect(_on_message_received)
	var since: int = _connect_to("router")
	await wait_until(
		func() -> bool: return NpcVoice.is_connected_to_daemon(), "the handshake", STEP_TIMEOUT_S
	)
	var two_frames: Callable = func() -> bool:
		return _frame_sizes.any(func(sizes: PackedInt32Array) -> bool: return sizes.size() == 2)
	await wait_until(two_frames, "the message with a PING inside", STEP_TIMEOUT_S)
	var frame_sizes: Array[Array] = []
	for sizes: PackedInt32Array in _frame_sizes:
		frame_sizes.append(Array(sizes))
	report("router_messages", {"frame_sizes": frame_sizes})
	var said: Dictionary = {}
	for npc_id: String in LINES:
		var priority: String = LINES[npc_id]
		var line_options: Dictionary = {"priority": priority} if priority != "" else {}
		said[npc_id] = NpcVoice.say(npc_id, "Hello.", line_options)
	report("said", said)
	await _typing()
	var options: Dictionary = {"priority": "high", "profile": "fast"}
	NpcVoice.start_listening("smith", "open_mic", options)
	var voice_input: Node = NpcVoice.get_node(^"VoiceInput")
	var streamed: Callable = func() -> bool: return voice_input.get(&"_seq") >= MIC_BLOCKS
	await wait_until(streamed, "microphone blocks", STEP_TIMEOUT_S)
	NpcVoice.stop_listening(true)
	var dropped: Callable = func() -> bool:
		return events.slice(since).any(
			func(e: Dictionary) -> bool: return e["event"] == "disconnected"
		)
	await wait_until(dropped, "the silent router dropped", STEP_TIMEOUT_S)
	for turn_id: int in said.values():
		await wait_for_event("speech_finished", turn_id)
	_connection.message_received.disconnect(_on_message_received)
	_report_peer("router", since, {})


## Types "Where is the smith?" into a [LineEdit] attached to "smith": "Where is" in one frame
## (one message after the pause), a key and Backspace in one frame (the same text: nothing
## sent), " the" a key a frame, then " smith?" and Enter in one frame (the line is said, no
## typing of it). Waits for the addon's pauses to end, not for time.
func _typing() -> void:
	var line := LineEdit.new()
	add_child(line)
	NpcVoice.attach_line_edit(line, "smith")
	line.text_submitted.connect(_on_typed_line_submitted)
	var typing: RefCounted = NpcVoice._typing  # white box: nothing pending = the pause ended
	var settled: Callable = func() -> bool: return not typing.call(&"has_pending")
	line.grab_focus()
	await type_keys("Where is", false)
	await get_tree().process_frame  # LineEdit emits text_changed at the end of the frame
	await wait_until(settled, "the first pause", STEP_TIMEOUT_S)
	await type_keys("x", false)
	var backspace := InputEventKey.new()
	backspace.keycode = KEY_BACKSPACE
	backspace.pressed = true
	get_viewport().push_input(backspace)
	await get_tree().process_frame
	report("unchanged", {"pending": typing.call(&"has_pending"), "text": line.text})
	await type_keys(" the")
	await get_tree().process_frame
	await wait_until(settled, "the second pause", STEP_TIMEOUT_S)
	await type_keys(" smith?", false, true)
	await get_tree().process_frame
	report("submitted", {"pending": typing.call(&"has_pending")})
	line.queue_free()


#endregion


#region Signal Handlers
func _on_typed_line_submitted(text: String) -> void:
	report("typing_said", {"turn_id": NpcVoice.say("smith", text), "text": text})


func _on_message_received(frames: Array[PackedByteArray]) -> void:
	var sizes := PackedInt32Array()
	for frame: PackedByteArray in frames:
		sizes.append(frame.size())
	_frame_sizes.append(sizes)
#endregion
