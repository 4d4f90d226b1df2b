extends RefCounted
## Plays one turn at a time through an [AudioStreamGenerator]: the logic shared by
## [NpcVoicePlayer], [NpcVoicePlayer2D] and [NpcVoicePlayer3D].
##
## Blocks (s16le mono PCM) wait in a GDScript-side queue as raw bytes. Playback starts once
## [code]prebuffer_ms[/code] of audio is queued (or the turn's last block has arrived). From
## then on, every frame converts whole blocks to [PackedVector2Array] and pushes them with
## [method AudioStreamGeneratorPlayback.push_buffer] until the generator holds a target fill of
## about the pre-buffer, so the conversion cost is spread over frames instead of landing all at
## once when the daemon sends a burst. The generator runs at the PCM's own rate (Godot
## resamples to the mix rate) with a buffer just larger than the target fill, not the default
## 0.5 s. Underruns are read from [method AudioStreamGeneratorPlayback.get_skips]: mix periods
## that found the buffer empty while more of the turn was still to come.
##
## What was played is what the generator consumed: the frames pushed minus those it still
## holds. [signal chunk_started] fires when the first sample of a chunk was consumed (the
## autoload emits the chunk's subtitle then), and the lip-sync events of the daemon's
## [code]timing[/code] messages ([signal word_started], [signal viseme_changed],
## [signal mouth_open_changed]; [code]timing_track.gd[/code]) when their sample was: both on the
## same clock, in sample order. Game code that stops the node, sets
## [code]playing = false[/code] or replaces its [code]stream[/code] ends the turn
## ([signal playback_aborted]).

#region Signals
## Playback of [param turn_id] began: the pre-buffer was reached.
signal playback_started(turn_id: int)
## Everything of [param turn_id] was played after its last block arrived. [param played_ms]:
## the audio consumed by the mixer (all of it).
signal playback_finished(turn_id: int, underruns: int, played_ms: float)
## Playback of [param turn_id] was taken away: the node left the tree, or game code stopped
## it or replaced its stream. Nothing more of the turn plays here. [param played_ms]: the
## audio the mixer consumed up to then.
signal playback_aborted(turn_id: int, underruns: int, played_ms: float)
## The first sample of chunk [param chunk_index] of [param turn_id] was played.
signal chunk_started(turn_id: int, chunk_index: int)
## The mixer reached the start of word [param text] (see [code]timing_track.gd[/code]).
signal word_started(turn_id: int, text: String)
## The mixer reached a viseme: the mouth takes the shape [param viseme] as far as [param weight].
signal viseme_changed(turn_id: int, viseme: String, weight: float)
## The mixer reached a block of a voice without visemes: the mouth opens [param open] (0..1).
signal mouth_open_changed(turn_id: int, open: float)
## No more lip-sync event of [param turn_id] comes from here: it was played out, cut, stopped or
## taken away (close the mouth).
signal lip_sync_ended(turn_id: int)
#endregion

#region Constants
const TimingTrack := preload("timing_track.gd")
## Lowest generator fill kept, whatever the pre-buffer: covers a few slow frames.
const MIN_FILL_MS: int = 60
## Generator capacity above the target fill: room for one more block per frame.
const HEADROOM_MS: int = 100
## Used when a turn starts before its sample rate is known (never in practice).
const DEFAULT_SAMPLE_RATE_HZ: int = 22050
## Group every NPC voice player joins; the autoload looks players up by [code]npc_id[/code].
const PLAYER_GROUP: StringName = &"npc_voice_players"
#endregion

#region Private Variables
var _node: Node = null
var _generator: AudioStreamGenerator = null
var _retired_generator: AudioStreamGenerator = null
var _playback: AudioStreamGeneratorPlayback = null
var _turn_id: int = -1
var _prebuffer_ms: int = 0
var _sample_rate_hz: int = 0
var _queue: Array[PackedByteArray] = []
var _queued_samples: int = 0
var _received_samples: int = 0
var _pushed_frames: int = 0
var _chunk_marks: Array[Vector2i] = []
var _last_chunk: int = -1
var _pending: PackedVector2Array = PackedVector2Array()
var _pending_pos: int = 0
var _ending: bool = false
var _playing: bool = false
var _capacity: int = 0
var _target_frames: int = 0
var _skips_base: int = 0
var _underruns: int = 0
var _stop_at: int = -1
var _timing: TimingTrack = TimingTrack.new()
#endregion


#region Engine Callbacks
## [param node] is the player node: an [AudioStreamPlayer], [AudioStreamPlayer2D] or
## [AudioStreamPlayer3D] (they share no base class with [code]play[/code] and
## [code]stream[/code], so their methods are called by name).
func _init(node: Node) -> void:
	_node = node
	_timing.word_started.connect(word_started.emit)
	_timing.viseme_changed.connect(viseme_changed.emit)
	_timing.mouth_open_changed.connect(mouth_open_changed.emit)


#endregion


#region Public Functions
## Converts s16le mono PCM to stereo frames in [-1, 1) for [AudioStreamGeneratorPlayback], the
## whole block in one call.
static func s16le_to_frames(pcm: PackedByteArray) -> PackedVector2Array:
	var count: int = pcm.size() >> 1
	var frames := PackedVector2Array()
	frames.resize(count)
	for i: int in count:
		var sample: float = pcm.decode_s16(i << 1) / 32768.0
		frames[i] = Vector2(sample, sample)
	return frames


## Asks the [code]NpcVoice[/code] autoload to say [param text] to [param npc_id] through
## [param player]; returns the turn id, or -1 when the autoload is missing.
static func say_through(player: Node, npc_id: String, text: String, options: Dictionary) -> int:
	var client: Node = player.get_node_or_null(^"/root/NpcVoice")
	if client == null:
		push_error("NpcVoice autoload missing: enable the NPC Voice plugin")
		return -1
	var routed: Dictionary = options.duplicate()
	routed["player"] = player
	return client.call(&"say", npc_id, text, routed)


## The turn this output plays or waits for, or -1.
func current_turn_id() -> int:
	return _turn_id


## True when the node that owns this output still exists.
func is_alive() -> bool:
	return is_instance_valid(_node)


## Samples of the current turn's audio the mixer has consumed so far: the clock of the
## lip-sync events.
func played_samples() -> int:
	return _played_frames()


## Milliseconds of the current turn's audio the mixer has consumed so far.
func played_ms() -> float:
	var rate: int = _sample_rate_hz if _sample_rate_hz > 0 else DEFAULT_SAMPLE_RATE_HZ
	return _played_frames() * 1000.0 / rate


## Makes [param turn_id] the output's turn, dropping whatever played before at once.
## Playback starts once [param prebuffer_ms] of audio is queued.
func begin_turn(turn_id: int, prebuffer_ms: int) -> void:
	stop_turn(_turn_id)
	_turn_id = turn_id
	_prebuffer_ms = maxi(prebuffer_ms, 0)


## Queues one block of [param turn_id] (s16le mono at [param sample_rate_hz], from chunk
## [param chunk_index]); blocks of any other turn are ignored.
func push_block(
	turn_id: int, pcm: PackedByteArray, sample_rate_hz: int, chunk_index: int = -1
) -> void:
	if turn_id != _turn_id or turn_id < 0:
		return
	if _sample_rate_hz == 0 and sample_rate_hz > 0:
		_sample_rate_hz = sample_rate_hz
	if chunk_index >= 0 and chunk_index != _last_chunk:
		_last_chunk = chunk_index
		_chunk_marks.append(Vector2i(_received_samples, chunk_index))
	if pcm.size() >= 2:
		_queue.append(pcm)
		_queued_samples += pcm.size() >> 1
		_received_samples += pcm.size() >> 1


## Queues the lip-sync events of a [code]timing[/code] message of [param turn_id] (parsed JSON);
## they fire when the mixer reaches their samples. Messages of any other turn are ignored.
func push_timing(turn_id: int, message: Dictionary) -> void:
	if turn_id == _turn_id and turn_id >= 0:
		_timing.add_message(message)


## The last block of [param turn_id] has been queued: play out what remains, then emit
## [signal playback_finished].
func end_turn(turn_id: int) -> void:
	if turn_id == _turn_id and turn_id >= 0:
		_ending = true


## Cuts [param turn_id] after chunk [param after_chunk] (a scene line the player spoke into):
## what was received of later chunks is dropped, and playback ends at the end of that chunk, or
## at once when [param after_chunk] is -1 or a later chunk already plays. Blocks of later chunks
## must not be pushed any more.
func cut_turn(turn_id: int, after_chunk: int) -> void:
	if turn_id != _turn_id or turn_id < 0:
		return
	_timing.drop_chunks_after(after_chunk)
	var end: int = -1
	for mark: Vector2i in _chunk_marks:
		if mark.y > after_chunk:
			end = mark.x
			break
	if after_chunk < 0 or (end < 0 and _last_chunk > after_chunk):
		_chunk_marks.clear()  # no subtitle of what is not played
		_timing.clear()
		_finish()  # nothing left to play: a later chunk plays already, or "stop now"
	elif end >= 0:
		_truncate(end)


## Barge-in: stops [param turn_id] at once and drops everything queued (here and inside the
## generator). Returns the turn's underrun count so far.
func stop_turn(turn_id: int) -> int:
	if turn_id != _turn_id or turn_id < 0:
		return 0
	if _playing and not _all_pushed():
		_underruns = _playback.get_skips() - _skips_base
	var underruns: int = _underruns
	if _playing and _owns_node():
		_node.call(&"stop")  # not when game code took the node over: its sound is not ours
	_reset()
	return underruns


## Ends the current turn here because the node was taken away from it (it leaves the tree, or
## game code stopped it or replaced its stream), and tells the autoload.
func abort() -> void:
	var turn_id: int = _turn_id
	if turn_id >= 0:
		var played: float = played_ms()
		var underruns: int = stop_turn(turn_id)
		playback_aborted.emit(turn_id, underruns, played)


## Advances the turn: starts playback after the pre-buffer, keeps the generator filled,
## counts underruns, and ends playback when everything was heard. Call once per frame.
func process() -> void:
	if _turn_id < 0:
		return
	if _playing and not _owns_node():
		abort()  # game code called stop(), set playing = false or replaced the stream
		return
	if not _playing:
		if _queued_samples > 0 and (_ending or _prebuffer_reached()):
			_start_playback()
		elif _ending:
			_finish()
		return
	_fill()
	_emit_reached(false)
	if _stop_at >= 0 and _played_frames() >= _stop_at:
		_finish()  # cut: the generator held audio past the cut when it came
	elif not _all_pushed():
		_underruns = _playback.get_skips() - _skips_base
	elif _ending and _playback.get_frames_available() >= _capacity:
		_finish()


#endregion


#region Private Functions
## True when the queue holds the pre-buffer, to the nearest millisecond: blocks are whole
## samples, so 50 ms at 22050 Hz is 1102 samples (49.98 ms) and two of them count as 100 ms.
func _prebuffer_reached() -> bool:
	var rate: int = _sample_rate_hz if _sample_rate_hz > 0 else DEFAULT_SAMPLE_RATE_HZ
	return roundi(_queued_samples * 1000.0 / rate) >= _prebuffer_ms


func _all_pushed() -> bool:
	return _queue.is_empty() and _pending_pos >= _pending.size()


## Frames of the turn the generator has consumed: pushed minus still held.
func _played_frames() -> int:
	if not _playing or _playback == null:
		return 0
	return _pushed_frames - (_capacity - _playback.get_frames_available())


## True while the node still plays this output's generator playback.
func _owns_node() -> bool:
	if not is_instance_valid(_node) or _node.get(&"stream") != _generator:
		return false
	if not _node.call(&"has_stream_playback"):  # stop(), playing = false
		return false
	return _node.call(&"get_stream_playback") == _playback


func _start_playback() -> void:
	var rate: int = _sample_rate_hz if _sample_rate_hz > 0 else DEFAULT_SAMPLE_RATE_HZ
	var target_ms: int = maxi(_prebuffer_ms, MIN_FILL_MS)
	var buffer_s: float = (target_ms + HEADROOM_MS) / 1000.0
	# mix_rate and buffer_length only take effect before play(): a new generator when they change.
	var reuse: bool = (
		_generator != null
		and int(_generator.mix_rate) == rate
		and is_equal_approx(_generator.buffer_length, buffer_s)
	)
	if not reuse:
		# The audio thread may still mix (fade out) the old generator's playback after the
		# stream is replaced, and that playback does not keep its generator alive: hold it
		# until the next replacement.
		_retired_generator = _generator
		_generator = AudioStreamGenerator.new()
		_generator.mix_rate = rate  # Godot resamples to the output rate natively
		_generator.buffer_length = buffer_s
	_node.call(&"set_stream", _generator)
	_node.call(&"play", 0.0)
	if _node.call(&"has_stream_playback"):
		_playback = _node.call(&"get_stream_playback") as AudioStreamGeneratorPlayback
	if _playback == null:  # the node is not in the tree
		push_warning("NpcVoice: the player could not start its AudioStreamGenerator")
		_finish()
		return
	_capacity = _playback.get_frames_available()  # the ring buffer is empty right after play()
	_target_frames = mini(int(rate * target_ms / 1000.0), _capacity)
	_playing = true
	_fill()
	_skips_base = _playback.get_skips()
	playback_started.emit(_turn_id)


## Tops the generator up to the target fill, converting whole blocks as they are needed.
func _fill() -> void:
	var free: int = _playback.get_frames_available()
	var wanted: int = _target_frames - (_capacity - free)
	while wanted > 0 and free > 0:
		if _pending_pos >= _pending.size():
			if _queue.is_empty():
				return
			var block: PackedByteArray = _queue.pop_front()
			_queued_samples -= block.size() >> 1
			_pending = s16le_to_frames(block)
			_pending_pos = 0
		var count: int = mini(mini(wanted, free), _pending.size() - _pending_pos)
		if _pending_pos == 0 and count == _pending.size():
			_playback.push_buffer(_pending)
		else:
			_playback.push_buffer(_pending.slice(_pending_pos, _pending_pos + count))
		_pending_pos += count
		_pushed_frames += count
		wanted -= count
		free -= count


## Drops everything of the turn from sample [param end] on (a cut at a chunk boundary): queued
## blocks, the rest of the block being pushed, chunk marks; what the generator already holds past
## it is stopped by [method process]. No more audio comes: the turn plays out to there.
func _truncate(end: int) -> void:
	var start: int = _received_samples
	while not _queue.is_empty():
		var block: PackedByteArray = _queue.back()
		var samples: int = block.size() >> 1
		start -= samples
		if start >= end:
			_queue.pop_back()
			_queued_samples -= samples
			continue
		if start + samples > end:
			_queue[-1] = block.slice(0, 2 * (end - start))
			_queued_samples -= start + samples - end
		break
	if _pushed_frames + _pending.size() - _pending_pos > end:
		_pending = _pending.slice(0, _pending_pos + maxi(end - _pushed_frames, 0))
	_received_samples = mini(_received_samples, end)
	while not _chunk_marks.is_empty() and _chunk_marks.back().x >= end:
		_chunk_marks.pop_back()
	_stop_at = end
	_ending = true


## Emits, in sample order, [signal chunk_started] for every chunk whose first sample was consumed
## ([param all]: for every chunk left, when the turn was played to its end) and the lip-sync
## events whose sample was reached (consumed frames >= offset). A handler may end the turn.
func _emit_reached(all: bool) -> void:
	var played: int = _played_frames()
	while _turn_id >= 0:
		var event_at: int = _timing.next_offset()
		var event_due: bool = _playing and event_at >= 0 and event_at <= played
		var chunk_due: bool = not _chunk_marks.is_empty() and (all or _chunk_marks[0].x < played)
		if chunk_due and not (event_due and event_at < _chunk_marks[0].x):
			chunk_started.emit(_turn_id, _chunk_marks.pop_front().y)
		elif event_due:
			_timing.fire_next(_turn_id)
		else:
			return


func _finish() -> void:
	var turn_id: int = _turn_id
	var underruns: int = _underruns
	_emit_reached(true)
	var played: float = played_ms()
	if _playing and _owns_node():
		_node.call(&"stop")
	_reset()
	playback_finished.emit(turn_id, underruns, played)


func _reset() -> void:
	var turn_id: int = _turn_id
	_timing.clear()
	_turn_id = -1
	_prebuffer_ms = 0
	_sample_rate_hz = 0
	_queue.clear()
	_queued_samples = 0
	_received_samples = 0
	_pushed_frames = 0
	_chunk_marks.clear()
	_last_chunk = -1
	_pending = PackedVector2Array()
	_pending_pos = 0
	_ending = false
	_playing = false
	_playback = null
	_capacity = 0
	_target_frames = 0
	_skips_base = 0
	_underruns = 0
	_stop_at = -1
	if turn_id >= 0:
		lip_sync_ended.emit(turn_id)
#endregion
