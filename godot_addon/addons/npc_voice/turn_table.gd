extends RefCounted
## The turns in flight of the [code]NpcVoice[/code] autoload, from a [code]say[/code] or a voice
## [code]transcript[/code] until [signal speech_finished]: picks each turn's voice player, hands
## it the turn's blocks, stops it (cancel, barge-in), emits each chunk's subtitle when the
## chunk starts playing, and ends it exactly once, after its terminal event and its playback
## (or at once when it is refused, here or by the daemon). The autoload re-emits the signals.

#region Signals
## See the autoload's signal of the same name.
signal subtitle_received(turn_id: int, npc_id: String, text: String)
## See the autoload's signal of the same name.
signal speech_started(turn_id: int, npc_id: String)
## See the autoload's signal of the same name.
signal speech_finished(
	turn_id: int, npc_id: String, outcome: String, timings: Dictionary, underruns: int
)
## See the autoload's signal of the same name.
signal error_received(code: String, message: String, turn_id: int)
#endregion

#region Constants
const VoiceOutput := preload("voice_output.gd")
const TurnState := preload("turn_state.gd")
## Pre-buffer used when the daemon has not said (the "fast" profile's).
const DEFAULT_PREBUFFER_MS: int = 240
## Above every [code]chunk_index[/code]: "all the chunks".
const MAX_CHUNK_INDEX: int = 1 << 30
#endregion

#region Public Variables
## The smallest turn id a new [code]say[/code] may use: above every id sent or received.
var next_turn_id: int = 1
#endregion

#region Private Variables
var _owner: Node
var _default_player: Node
var _send: Callable
var _is_connected: Callable
var _turns: Dictionary = {}
var _npcs: Dictionary = {}
var _prebuffer_by_profile: Dictionary = {}
var _stray_unknown_turn_errors: int = 0
#endregion


#region Engine Callbacks
## [param owner]: the autoload (its tree holds the voice players); [param default_player]: where
## turns play when no player has their NPC's id; [param send]: sends a message Dictionary;
## [param is_connected]: true once the handshake is done.
func _init(owner: Node, default_player: Node, send: Callable, is_connected: Callable) -> void:
	_owner = owner
	_default_player = default_player
	_send = send
	_is_connected = is_connected


#endregion


#region Public Functions
## Takes the NPCs and their pre-buffers from the daemon's [code]welcome[/code].
func set_npcs(welcome_npcs: Array) -> void:
	_npcs.clear()
	_prebuffer_by_profile.clear()
	for npc: Variant in welcome_npcs:
		if npc is Dictionary:
			_npcs[str(npc.get("npc_id", ""))] = npc
			_prebuffer_by_profile[str(npc.get("profile", ""))] = int(npc.get("prebuffer_ms", 0))


## The NPCs of the last [code]welcome[/code], by id.
func npcs() -> Dictionary:
	return _npcs


## Registers turn [param turn_id] and starts its player; other turns of the same NPC or player
## stop (the daemon is told where it would not barge in by itself). A [param deferred] turn
## (a scene line) takes no player and stops nobody yet: it keeps what it receives until
## [method start_deferred], except a "cancelled" or "error", which ends it at once.
func begin_turn(
	turn_id: int, npc_id: String, options: Dictionary, deferred: bool = false
) -> TurnState:
	var turn := TurnState.new()
	turn.turn_id = turn_id
	next_turn_id = maxi(next_turn_id, turn_id + 1)  # ids only grow, whoever chose them
	turn.npc_id = npc_id
	turn.options = options
	turn.prebuffer_ms = _prebuffer_for(npc_id, options)
	turn.sent_usec = Time.get_ticks_usec()
	turn.deferred = deferred
	_turns[turn.turn_id] = turn
	if not deferred:
		_take_output(turn)
	return turn


## Starts the deferred turn [param turn_id] on its player (see [method begin_turn]): the blocks
## it received meanwhile are queued there at once, and a turn already "done" plays out.
func start_deferred(turn_id: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn == null or not turn.deferred:
		return
	turn.deferred = false
	if turn.stopped:
		return  # silenced while it waited: it ends with its terminal event
	_take_output(turn)
	for message: Dictionary in turn.held_timing:
		if turn.output != null:
			turn.output.push_timing(turn.turn_id, message)
	turn.held_timing.clear()
	for block: Array in turn.held_blocks:
		if turn.output != null:
			turn.output.push_block(turn.turn_id, block[0], block[1], block[2])
	turn.held_blocks.clear()
	if turn.output == null:
		_on_chunk_started(turn_id, MAX_CHUNK_INDEX)  # no player: every subtitle now
	if turn.terminal == "done":
		_terminate(turn, "done", {})


## Registers turn [param turn_id] as refused before it was sent ([param code]: not_connected,
## invalid_npc_id, text_too_long, message_too_large): it disturbs no other turn, and ends on
## the next frame with [signal error_received] and [signal speech_finished] "error".
func reject_turn(turn_id: int, npc_id: String, code: String, message: String) -> void:
	var turn := TurnState.new()
	turn.turn_id = turn_id
	next_turn_id = maxi(next_turn_id, turn_id + 1)
	turn.npc_id = npc_id
	turn.sent_usec = Time.get_ticks_usec()
	turn.terminal = "error"
	turn.stopped = true
	_turns[turn_id] = turn
	_end_refused.call_deferred(turn_id, code, message)


## True while [param turn_id] is in flight here.
func has_turn(turn_id: int) -> bool:
	return _turns.has(turn_id)


## Stops [param turn_id] at once and tells the daemon (see the autoload's [code]cancel[/code]).
func cancel(turn_id: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null and not turn.stopped:
		_interrupt(turn, true)


## Silences [param turn_id] now without a [code]cancel[/code]: the daemon ends it by itself
## (a [code]scene_end[/code]). It finishes with its terminal event, at once when it had one.
func silence(turn_id: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null and not turn.stopped:
		_interrupt(turn, false)


## The daemon cut [param turn_id] after chunk [param after_chunk] ([code]scene_cut[/code]: the
## player spoke into its scene): its later chunks are dropped, received or still to come, and
## it plays only to the end of that chunk (-1: it stops now). Its terminal event still ends it.
func cut(turn_id: int, after_chunk: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn == null or turn.stopped:
		return
	turn.cut = true
	turn.cut_after_chunk = after_chunk
	for chunk: int in turn.pending_subtitles.keys():
		if chunk > after_chunk:
			turn.pending_subtitles.erase(chunk)
	var kept: Array[Array] = []
	for block: Array in turn.held_blocks:
		if block[2] <= after_chunk:
			kept.append(block)
	turn.held_blocks = kept
	turn.held_timing.assign(
		turn.held_timing.filter(
			func(m: Dictionary) -> bool: return int_field(m, "chunk_index") <= after_chunk
		)
	)
	if turn.output != null and turn.output.current_turn_id() == turn_id:
		turn.output.cut_turn(turn_id, after_chunk)


## Barge-in by voice: silences every turn of [param npc_id] now. No [code]cancel[/code] is sent:
## the daemon ends a turn it still runs itself ([code]cancelled[/code], reason barge_in).
func stop_npc(npc_id: String) -> void:
	for turn: TurnState in _turns.values():
		if turn.npc_id == npc_id and not turn.stopped:
			_interrupt(turn, false)


## Client-side timings of [param turn_id] (see [signal speech_finished]); empty when unknown.
func timings(turn_id: int) -> Dictionary:
	var turn: TurnState = _turns.get(turn_id)
	if turn == null:
		return {}
	if turn.output != null and turn.output.current_turn_id() == turn_id:
		turn.played_ms = turn.output.played_ms()
	return turn.client_timings()


## Handles a [code]subtitle[/code]: emitted when the first sample of its chunk is played (at
## once when the turn has no player, or that chunk already plays).
func handle_subtitle(message: Dictionary) -> void:
	var turn: TurnState = _turns.get(int_field(message, "turn_id"))
	if turn == null or turn.stopped:
		return
	var text: String = str(message.get("text", ""))
	var chunk: int = int_field(message, "chunk_index")
	if turn.cut and chunk > turn.cut_after_chunk:
		return  # a chunk after the turn's cut
	if turn.deferred:
		turn.pending_subtitles[chunk] = text  # emitted when its chunk plays
	elif turn.output == null or chunk < 0 or chunk <= turn.started_chunk:
		subtitle_received.emit(turn.turn_id, turn.npc_id, text)
	else:
		turn.pending_subtitles[chunk] = text


## Handles a [code]timing[/code] message (lip sync): its events go to the turn's player, which
## fires them when the mixer reaches their samples (kept with the blocks while deferred).
func handle_timing(message: Dictionary) -> void:
	var turn: TurnState = _turns.get(int_field(message, "turn_id"))
	if turn == null or turn.stopped:
		return
	if turn.cut and int_field(message, "chunk_index") > turn.cut_after_chunk:
		return  # a chunk after the turn's cut
	if turn.deferred:
		turn.held_timing.append(message)
	elif turn.output != null:
		turn.output.push_timing(turn.turn_id, message)


## Handles an [code]audio_block[/code]: [param frames] are its header and PCM frames.
func handle_audio(header: Dictionary, frames: Array[PackedByteArray]) -> void:
	var turn: TurnState = _turns.get(int_field(header, "turn_id"))
	if turn == null or turn.stopped:
		return  # a stale block of a turn that was stopped here
	var samples: int = int_field(header, "sample_count")
	if frames.size() != 2 or frames[1].size() != 2 * samples:
		error_received.emit("bad_message", "malformed audio block", turn.turn_id)
		return
	var seq: int = int_field(header, "seq")
	turn.lost_blocks += maxi(seq - turn.next_seq, 0)
	turn.next_seq = seq + 1
	if turn.first_block_usec < 0:
		turn.first_block_usec = Time.get_ticks_usec()
	var rate: int = int_field(header, "sample_rate_hz")
	var chunk: int = int_field(header, "chunk_index")
	if turn.cut and chunk > turn.cut_after_chunk:
		return  # a chunk after the turn's cut
	if turn.deferred:
		turn.held_blocks.append([frames[1], rate, chunk])
	elif turn.output != null:
		turn.output.push_block(turn.turn_id, frames[1], rate, chunk)


## Handles a terminal event: [param kind] is "done", "cancelled" or "error".
func handle_terminal(message: Dictionary, kind: String) -> void:
	var turn: TurnState = _turns.get(int_field(message, "turn_id"))
	if turn != null:
		_terminate(turn, kind, message)


## The turn an [code]error[/code] ends: its [code]turn_id[/code], or the refused
## [code]say[/code]'s [code]rejected_turn_id[/code] when that turn is in flight here; else -1.
func turn_of_error(message: Dictionary) -> int:
	var turn_id: int = int_field(message, "turn_id")
	if turn_id >= 0:
		return turn_id
	var rejected: int = int_field(message, "rejected_turn_id")
	return rejected if rejected >= 0 and _turns.has(rejected) else -1


## Handles an [code]error[/code]: emits it (unless it answers a cancel that crossed the turn's
## terminal event) and ends the turn it names: [code]turn_id[/code], or for a [code]say[/code]
## refused before it became a turn (bad field, oversized frame, reused id), its
## [code]rejected_turn_id[/code].
func handle_error(message: Dictionary) -> void:
	var code: String = str(message.get("code", ""))
	var turn_id: int = turn_of_error(message)
	if turn_id < 0 and code == "unknown_turn" and _stray_unknown_turn_errors > 0:
		_stray_unknown_turn_errors -= 1
		return
	error_received.emit(code, str(message.get("message", "")), turn_id)
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		_terminate(turn, "error", message)


## The connection was lost: turns still running end with outcome "disconnected".
func connection_lost() -> void:
	_stray_unknown_turn_errors = 0
	for turn: TurnState in _turns.values():
		if turn.terminal == "":  # a turn already "done" keeps playing what it received
			turn.terminal = "disconnected"
			_interrupt(turn, false)


## [param key] of a JSON message as an int (JSON numbers are floats), or -1.
static func int_field(message: Dictionary, key: String) -> int:
	var value: Variant = message.get(key)
	if value is float or value is int:
		return int(value)
	return -1


#endregion


#region Private Functions
func _prebuffer_for(npc_id: String, options: Dictionary) -> int:
	if options.has("prebuffer_ms"):
		return int(options["prebuffer_ms"])
	var profile: String = str(options.get("profile", ""))
	if _prebuffer_by_profile.has(profile):
		return _prebuffer_by_profile[profile]
	var npc: Dictionary = _npcs.get(npc_id, {})
	return int(npc.get("prebuffer_ms", DEFAULT_PREBUFFER_MS))


## Gives [param turn] its player and starts it there; other turns of the same NPC or player stop.
func _take_output(turn: TurnState) -> void:
	turn.output = _output_for(turn.npc_id, turn.options)
	for other: TurnState in _turns.values():
		if other == turn or other.stopped or other.deferred:
			continue  # silent already (a refused turn ends on the next frame), or not started
		if other.npc_id == turn.npc_id or (turn.output != null and other.output == turn.output):
			_interrupt(other, true)  # an explicit cancel, even where `say` would barge in
	if turn.output != null:
		turn.output.begin_turn(turn.turn_id, turn.prebuffer_ms)


func _output_for(npc_id: String, options: Dictionary) -> VoiceOutput:
	var player: Node = null
	if options.get("player") is Node:
		player = options["player"]
	else:
		for node: Node in _owner.get_tree().get_nodes_in_group(VoiceOutput.PLAYER_GROUP):
			if node.get(&"npc_id") == npc_id:
				player = node
				break
	if player == null:
		player = _default_player
	var output: VoiceOutput = player.get(&"voice_output") as VoiceOutput
	if output == null:
		push_warning("NpcVoice: %s is not an NPC voice player" % player.name)
		return null
	if not output.playback_started.is_connected(_on_playback_started):
		output.playback_started.connect(_on_playback_started)
		output.playback_finished.connect(_on_playback_finished)
		output.playback_aborted.connect(_on_playback_aborted)
		output.chunk_started.connect(_on_chunk_started)
	return output


## Records the daemon's terminal event [param kind] for [param turn]: a "done" turn plays out,
## any other ends now.
func _terminate(turn: TurnState, kind: String, message: Dictionary) -> void:
	turn.terminal = kind
	if message.get("timings") is Dictionary:
		turn.timings = message["timings"]
	if turn.cancel_sent and not (kind == "cancelled" and message.get("reason") == "cancel"):
		# Our cancel crossed the turn's end (done, error, or a cancel of the daemon's own):
		# the daemon will answer it with an unknown_turn error that ends nothing.
		_stray_unknown_turn_errors += 1
	if kind == "done" and turn.deferred and not turn.stopped:
		return  # plays when start_deferred gives it its player
	if kind == "done" and turn.played_out:
		_finish(turn)  # a cut turn that played to its cut before its end came
	elif kind == "done" and not turn.stopped and turn.output != null and turn.output.is_alive():
		turn.output.end_turn(turn.turn_id)  # play out; speech_finished once heard
	else:
		_interrupt(turn, false)


func _end_refused(turn_id: int, code: String, message: String) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		error_received.emit(code, message, turn_id)
		_finish(turn)


## Stops [param turn]'s audio now and tells the daemon when [param send_cancel] and the turn
## still runs there; finishes the turn when the daemon has already ended it.
func _interrupt(turn: TurnState, send_cancel: bool) -> void:
	if not turn.stopped:
		turn.stopped = true
		if turn.output != null and turn.output.current_turn_id() == turn.turn_id:
			turn.played_ms = turn.output.played_ms()
			turn.underruns = turn.output.stop_turn(turn.turn_id)
		if turn.terminal == "" and send_cancel and _is_connected.call():
			turn.cancel_sent = true
			_send.call({"type": "cancel", "turn_id": turn.turn_id})
	if turn.terminal != "":
		_finish(turn)


func _finish(turn: TurnState) -> void:
	if not _turns.has(turn.turn_id):
		return
	_turns.erase(turn.turn_id)
	speech_finished.emit(
		turn.turn_id, turn.npc_id, turn.outcome(), turn.client_timings(), turn.underruns
	)


#endregion


#region Signal Handlers
func _on_playback_started(turn_id: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		turn.playback_usec = Time.get_ticks_usec()
		speech_started.emit(turn_id, turn.npc_id)


func _on_playback_finished(turn_id: int, underruns: int, played_ms: float) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		turn.underruns = underruns
		turn.played_ms = played_ms
		turn.played_out = true
		if turn.terminal != "":
			_finish(turn)


func _on_playback_aborted(turn_id: int, underruns: int, played_ms: float) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn != null:
		turn.underruns = underruns
		turn.played_ms = played_ms
		turn.output = null  # the player left the tree, or game code took it over
		_interrupt(turn, true)


func _on_chunk_started(turn_id: int, chunk_index: int) -> void:
	var turn: TurnState = _turns.get(turn_id)
	if turn == null:
		return
	turn.started_chunk = maxi(turn.started_chunk, chunk_index)
	for chunk: int in turn.pending_subtitles.keys():
		if chunk <= chunk_index:
			subtitle_received.emit(turn_id, turn.npc_id, turn.pending_subtitles[chunk])
			turn.pending_subtitles.erase(chunk)
#endregion
