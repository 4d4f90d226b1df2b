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

#region Signals
## Playback of [param turn_id] began: the pre-buffer was reached.
signal playback_started(turn_id: int)
## Everything of [param turn_id] was played after its last block arrived.
signal playback_finished(turn_id: int, underruns: int)
## The node left the tree while [param turn_id] was still playing or expected.
signal playback_aborted(turn_id: int)
#endregion

#region Constants
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
var _play: Callable
var _stop: Callable
var _get_playback: Callable
var _set_stream: Callable
var _generator: AudioStreamGenerator = null
var _playback: AudioStreamGeneratorPlayback = null
var _turn_id: int = -1
var _prebuffer_ms: int = 0
var _sample_rate_hz: int = 0
var _queue: Array[PackedByteArray] = []
var _queued_samples: int = 0
var _pending: PackedVector2Array = PackedVector2Array()
var _pending_pos: int = 0
var _ending: bool = false
var _playing: bool = false
var _capacity: int = 0
var _target_frames: int = 0
var _skips_base: int = 0
var _underruns: int = 0
#endregion


#region Engine Callbacks
## [param play], [param stop], [param get_playback] and [param set_stream] are the player
## node's own [code]play[/code], [code]stop[/code], [code]get_stream_playback[/code] and
## [code]set_stream[/code] (AudioStreamPlayer, AudioStreamPlayer2D and AudioStreamPlayer3D
## share no base class that has them).
func _init(play: Callable, stop: Callable, get_playback: Callable, set_stream: Callable) -> void:
	_play = play
	_stop = stop
	_get_playback = get_playback
	_set_stream = set_stream


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
	return _play.is_valid()


## Makes [param turn_id] the output's turn, dropping whatever played before at once.
## Playback starts once [param prebuffer_ms] of audio is queued.
func begin_turn(turn_id: int, prebuffer_ms: int) -> void:
	stop_turn(_turn_id)
	_turn_id = turn_id
	_prebuffer_ms = maxi(prebuffer_ms, 0)


## Queues one block of [param turn_id] (s16le mono at [param sample_rate_hz]); blocks of any
## other turn are ignored.
func push_block(turn_id: int, pcm: PackedByteArray, sample_rate_hz: int) -> void:
	if turn_id != _turn_id or turn_id < 0:
		return
	if _sample_rate_hz == 0 and sample_rate_hz > 0:
		_sample_rate_hz = sample_rate_hz
	if pcm.size() >= 2:
		_queue.append(pcm)
		_queued_samples += pcm.size() >> 1


## The last block of [param turn_id] has been queued: play out what remains, then emit
## [signal playback_finished].
func end_turn(turn_id: int) -> void:
	if turn_id == _turn_id and turn_id >= 0:
		_ending = true


## Barge-in: stops [param turn_id] at once and drops everything queued (here and inside the
## generator). Returns the turn's underrun count so far.
func stop_turn(turn_id: int) -> int:
	if turn_id != _turn_id or turn_id < 0:
		return 0
	if _playing and not _all_pushed():
		_underruns = _playback.get_skips() - _skips_base
	var underruns: int = _underruns
	if _playing and _stop.is_valid():
		_stop.call()
	_reset()
	return underruns


## Called by the owning node when it leaves the tree: stops and tells the autoload.
func abort() -> void:
	var turn_id: int = _turn_id
	if turn_id >= 0:
		stop_turn(turn_id)
		playback_aborted.emit(turn_id)


## Advances the turn: starts playback after the pre-buffer, keeps the generator filled,
## counts underruns, and ends playback when everything was heard. Call once per frame.
func process() -> void:
	if _turn_id < 0:
		return
	if not _playing:
		if _queued_samples > 0 and (_ending or _queued_ms() >= _prebuffer_ms):
			_start_playback()
		elif _ending:
			_finish()
		return
	_fill()
	if not _all_pushed():
		_underruns = _playback.get_skips() - _skips_base
	elif _ending and _playback.get_frames_available() >= _capacity:
		_finish()


#endregion


#region Private Functions
func _queued_ms() -> int:
	var rate: int = _sample_rate_hz if _sample_rate_hz > 0 else DEFAULT_SAMPLE_RATE_HZ
	return int(_queued_samples * 1000.0 / rate)


func _all_pushed() -> bool:
	return _queue.is_empty() and _pending_pos >= _pending.size()


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
		_generator = AudioStreamGenerator.new()
		_generator.mix_rate = rate  # Godot resamples to the output rate natively
		_generator.buffer_length = buffer_s
	_set_stream.call(_generator)
	_play.call(0.0)
	_playback = _get_playback.call() as AudioStreamGeneratorPlayback
	if _playback == null:  # the node is not in the tree, or the stream was replaced
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
		wanted -= count
		free -= count


func _finish() -> void:
	var turn_id: int = _turn_id
	var underruns: int = _underruns
	if _playing and _stop.is_valid():
		_stop.call()
	_reset()
	playback_finished.emit(turn_id, underruns)


func _reset() -> void:
	_turn_id = -1
	_prebuffer_ms = 0
	_sample_rate_hz = 0
	_queue.clear()
	_queued_samples = 0
	_pending = PackedVector2Array()
	_pending_pos = 0
	_ending = false
	_playing = false
	_playback = null
	_capacity = 0
	_target_frames = 0
	_skips_base = 0
	_underruns = 0
#endregion
