extends Node
## Microphone capture for the [code]NpcVoice[/code] autoload: an [AudioStreamPlayer] plays an
## [AudioStreamMicrophone] into a bus that carries an [AudioEffectCapture] (the bus named by
## [code]npc_voice/voice/mic_bus[/code], created muted when missing, so the player does not hear
## themselves: a bus's effects run before its mute applies). While capturing, every frame the
## captured stereo frames are pulled, converted to mono s16le at 16 kHz
## ([code]mic_resampler.gd[/code]) and cut into blocks of [member block_samples].
##
## The microphone is opened once ([method open]) and stays open between captures: a capture
## ([method start] ... [method stop]) only gates what is turned into blocks, so push-to-talk does
## not reopen the OS input on every key press (a hitch on some platforms, and the first syllable
## lost while the driver starts). [method close] releases it.
##
## Microphone input must be enabled in the project: [code]audio/driver/enable_input[/code].

#region Signals
## A block of s16le mono PCM at [constant OUTPUT_RATE_HZ]: [member block_samples] samples, or
## fewer for the last block of a capture stopped with [code]flush[/code].
signal block_captured(pcm: PackedByteArray)
#endregion

#region Constants
const MicResampler := preload("mic_resampler.gd")
## Rate of the blocks: the rate the daemon's speech recognition runs at.
const OUTPUT_RATE_HZ: int = 16000
## Audio held by a capture effect this node creates, in seconds: frames that arrive while the
## game is stuck in a frame longer than this are lost (Godot's default is 0.1 s).
const CAPTURE_BUFFER_S: float = 0.5
## The project setting that enables microphone input (off by default).
const ENABLE_INPUT_SETTING: String = "audio/driver/enable_input"
#endregion

#region Public Variables
## Samples per block (1600 = 100 ms at 16 kHz).
var block_samples: int = 1600
#endregion

#region Private Variables
var _player: AudioStreamPlayer = AudioStreamPlayer.new()
var _capture: AudioEffectCapture = null
var _resampler: MicResampler = null
var _pending: PackedByteArray = PackedByteArray()
var _capturing: bool = false
#endregion


#region Engine Callbacks
func _ready() -> void:
	_player.name = "Microphone"
	add_child(_player)


func _process(_delta: float) -> void:
	if _capturing:
		_pull()


func _exit_tree() -> void:
	close()


#endregion


#region Public Functions
## Why voice input cannot run on a bus with [param channel_pairs] stereo pairs (1 = stereo
## output, 3 = 5.1, 4 = 7.1), or "". On surround output Godot's [AudioEffectCapture] also
## captures every extra pair's (silent) 512-frame block after the front one
## (godotengine/godot#91133), which would cut the player's speech into a stuttering,
## slowed-down stream.
static func channel_problem(channel_pairs: int) -> String:
	if channel_pairs <= 1:
		return ""
	return (
		(
			"voice input needs stereo audio output, but Godot mixes %d channels here: "
			+ "AudioEffectCapture then interleaves silent blocks of the extra channels with the "
			+ "microphone's (godotengine/godot#91133). Set the system's output device to stereo."
		)
		% (channel_pairs * 2)
	)


## Opens the microphone (once) and routes it through the bus [param bus_name], adding the bus and
## its capture effect when missing. Returns "" or why the microphone cannot be used.
func open(bus_name: String) -> String:
	if not ProjectSettings.get_setting(ENABLE_INPUT_SETTING, false):
		return "microphone input is off: enable the project setting " + ENABLE_INPUT_SETTING
	var capture: AudioEffectCapture = _capture_effect(bus_name)
	var problem: String = channel_problem(AudioServer.get_bus_channels(_bus_index(bus_name)))
	if problem != "":
		return problem
	if capture != _capture:
		close()
		_capture = capture
	if not _player.playing:
		_player.bus = bus_name
		_player.stream = AudioStreamMicrophone.new()
		_player.play()
	return ""


## Starts turning what the open microphone hears from now on into blocks (restarts the blocks
## if a capture runs). Call [method open] first.
func start() -> void:
	_drain()  # what was heard before this moment is not part of the capture
	_resampler = MicResampler.new(int(AudioServer.get_mix_rate()), OUTPUT_RATE_HZ)
	_pending = PackedByteArray()
	_capturing = true


## Stops turning audio into blocks; the microphone stays open. With [param flush], what was
## captured up to now is emitted first (the last block may be shorter); without, it is dropped.
func stop(flush: bool) -> void:
	if not _capturing:
		return
	if flush:
		_pull()
		if not _pending.is_empty():
			block_captured.emit(_pending)
	_pending = PackedByteArray()
	_capturing = false


## Stops any capture and closes the microphone (the OS input).
func close() -> void:
	stop(false)
	if _player.playing:
		_player.stop()


## True while the microphone is open.
func is_open() -> bool:
	return _player.playing


## True between [method start] and [method stop].
func is_capturing() -> bool:
	return _capturing


#endregion


#region Private Functions
## Converts the frames captured since the last call and emits every complete block.
func _pull() -> void:
	var available: int = _capture.get_frames_available()
	if available > 0:
		_pending.append_array(_resampler.process(_capture.get_buffer(available)))
	var block_bytes: int = block_samples * 2
	while _pending.size() >= block_bytes:
		block_captured.emit(_pending.slice(0, block_bytes))
		_pending = _pending.slice(block_bytes)


## Discards what the capture effect holds (reading is safe while the audio thread writes).
func _drain() -> void:
	var available: int = _capture.get_frames_available()
	if available > 0:
		_capture.get_buffer(available)


static func _bus_index(bus_name: String) -> int:
	return AudioServer.get_bus_index(bus_name)


## The capture effect on bus [param bus_name], adding the bus (muted) and the effect as needed.
static func _capture_effect(bus_name: String) -> AudioEffectCapture:
	var bus: int = _bus_index(bus_name)
	if bus < 0:
		AudioServer.add_bus()
		bus = AudioServer.bus_count - 1
		AudioServer.set_bus_name(bus, bus_name)
		AudioServer.set_bus_mute(bus, true)  # the player must not hear themselves
	for index: int in AudioServer.get_bus_effect_count(bus):
		var effect: AudioEffect = AudioServer.get_bus_effect(bus, index)
		if effect is AudioEffectCapture:
			return effect as AudioEffectCapture
	var capture := AudioEffectCapture.new()
	capture.buffer_length = CAPTURE_BUFFER_S  # only read when the effect is added to a bus
	AudioServer.add_bus_effect(bus, capture)
	return capture
#endregion
