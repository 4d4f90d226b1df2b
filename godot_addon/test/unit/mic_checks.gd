extends RefCounted
## Unit checks of the microphone path's pure parts, run by [code]run_tests.gd[/code]: the
## resampler ([code]mic_resampler.gd[/code]: a box filter from the mix rate to 16 kHz, compared
## with an independent reference, the same output however the input is cut, speech-band tones
## kept, clipping) and the refusal of surround output ([code]mic_capture.gd[/code]).

#region Constants
const MicResampler := preload("res://addons/npc_voice/mic_resampler.gd")
const MicCapture := preload("res://addons/npc_voice/mic_capture.gd")
## Where the random input is cut into pieces (uneven, single frames included).
const CUTS: Array[int] = [0, 1, 2, 700, 701, 2222, 4000, 4801]
#endregion

#region Private Variables
var _check: Callable
#endregion


#region Engine Callbacks
## [param check]: the runner's [code]check(condition: bool, what: String)[/code].
func _init(check: Callable) -> void:
	_check = check


#endregion


#region Public Functions
func run() -> void:
	_test_resampler_basics()
	for rate: int in [48000, 44100]:
		_test_box_filter_cut_anywhere(rate)
	_test_tones()
	_test_clipping()
	_check.call(MicCapture.channel_problem(1) == "", "stereo output: voice input allowed")
	_check.call("91133" in MicCapture.channel_problem(3), "5.1 output: voice input refused")


## The box filter computed another way: output k is the mean of the mono input over input time
## [k * step, (k + 1) * step), from the integral of the input (constant over each frame) at the
## two edges; then scaled, rounded half away from zero and clipped like the addon's.
static func box_reference(frames: PackedVector2Array, input_rate: int) -> PackedInt32Array:
	var step: float = input_rate / 16000.0
	var integral := PackedFloat64Array([0.0])
	for frame: Vector2 in frames:
		integral.append(integral[integral.size() - 1] + (float(frame.x) + float(frame.y)) * 0.5)
	var at_edge: Callable = func(edge: float) -> float:
		var whole: int = floori(edge)
		if whole >= frames.size():
			return integral[frames.size()]
		var frame: Vector2 = frames[whole]
		return integral[whole] + (edge - whole) * (float(frame.x) + float(frame.y)) * 0.5
	var out := PackedInt32Array()
	for k: int in int(frames.size() / step):
		var mean: float = (at_edge.call((k + 1) * step) - at_edge.call(k * step)) / step
		out.append(clampi(roundi(mean * 32767.0), -32768, 32767))
	return out


#endregion


#region Private Functions
static func _samples(pcm: PackedByteArray) -> PackedInt32Array:
	var samples := PackedInt32Array()
	for offset: int in range(0, pcm.size(), 2):
		samples.append(pcm.decode_s16(offset))
	return samples


static func _tone(hz: float, frames: int, rate: int) -> PackedVector2Array:
	var tone := PackedVector2Array()
	for i: int in frames:
		var value: float = 0.5 * sin(TAU * hz * i / rate)
		tone.append(Vector2(value, value))
	return tone


static func _rms(values: PackedFloat64Array) -> float:
	var total: float = 0.0
	for value: float in values:
		total += value * value
	return sqrt(total / values.size())


func _test_resampler_basics() -> void:
	var frames := PackedVector2Array()
	for i: int in 4800:  # 100 ms of a 1 kHz sine at 48 kHz, 0.5 on the left, silent on the right
		frames.append(Vector2(sin(TAU * 1000.0 * i / 48000.0) * 0.5, 0.0))
	var whole: PackedByteArray = MicResampler.new(48000, 16000).process(frames)
	_check.call(whole.size() == 2 * 1600, "48 kHz -> 16 kHz: 1600 samples per 100 ms")
	var mean: float = (frames[3].x + frames[4].x + frames[5].x) / 6.0
	_check.call(whole.decode_s16(2) == roundi(mean * 32767.0), "one sample = mean of 3 frames")
	var pieces := MicResampler.new(48000, 16000)
	var cut := PackedByteArray()
	for start: int in range(0, 4800, 700):  # uneven pieces, as _process delivers them
		cut.append_array(pieces.process(frames.slice(start, start + 700)))
	_check.call(cut == whole, "cutting the input in pieces of 700 gives the same output")
	_check.call(MicResampler.new(44100, 16000).process(frames).size() == 2 * 1741, "44.1 kHz")
	var started: int = Time.get_ticks_usec()
	MicResampler.new(48000, 16000).process(frames)
	print(
		(
			"mic 48 kHz -> 16 kHz: %.2f ms per 100 ms of audio"
			% ((Time.get_ticks_usec() - started) / 1000.0)
		)
	)


## Random stereo input: the output is the box filter's (within 1 for float rounding), as many
## samples as whole 1/16000 s fit, and the same wherever the input is cut.
func _test_box_filter_cut_anywhere(rate: int) -> void:
	var rng := RandomNumberGenerator.new()
	rng.seed = 7
	var frames := PackedVector2Array()
	for i: int in CUTS[-1]:
		frames.append(Vector2(rng.randf_range(-0.9, 0.9), rng.randf_range(-0.9, 0.9)))
	var whole: PackedByteArray = MicResampler.new(rate, 16000).process(frames)
	var samples: PackedInt32Array = _samples(whole)
	var reference: PackedInt32Array = box_reference(frames, rate)
	var count: int = int(CUTS[-1] * 16000 / float(rate))
	_check.call(samples.size() == count and reference.size() == count, "%d Hz: count" % rate)
	var worst: int = 0
	for k: int in mini(samples.size(), reference.size()):
		worst = maxi(worst, absi(samples[k] - reference[k]))
	_check.call(worst <= 1, "%d Hz: the box filter's output (off by %d)" % [rate, worst])
	if rate == 48000:
		var mean3: int = 0
		for k: int in samples.size():
			var total: float = 0.0
			for frame: Vector2 in frames.slice(3 * k, 3 * k + 3):
				total += (float(frame.x) + float(frame.y)) * 0.5
			mean3 = maxi(mean3, absi(samples[k] - roundi(total / 3.0 * 32767.0)))
		_check.call(mean3 <= 1, "48 kHz: each sample is the mean of 3 frames")
	var resampler := MicResampler.new(rate, 16000)
	var cut := PackedByteArray()
	for i: int in CUTS.size() - 1:
		cut.append_array(resampler.process(frames.slice(CUTS[i], CUTS[i + 1])))
	_check.call(cut == whole, "%d Hz: cutting the input anywhere gives the same output" % rate)


## Tones of the speech band come through: a 1 kHz tone at 48 kHz exactly as the 3-frame mean
## predicts, and 300 Hz and 3 kHz at both rates with their level nearly kept.
func _test_tones() -> void:
	var out: PackedInt32Array = _samples(
		MicResampler.new(48000, 16000).process(_tone(1000.0, 48000, 48000))
	)
	var gain: float = (1.0 + 2.0 * cos(TAU / 48.0)) / 3.0  # the 3-frame mean's response at 1 kHz
	var worst: float = 0.0
	for n: int in out.size():
		var expected: float = gain * 0.5 * sin(TAU * 1000.0 * n / 16000.0 + TAU / 48.0)
		worst = maxf(worst, absf(out[n] / 32767.0 - expected))
	_check.call(out.size() == 16000 and worst < 2e-4, "1 kHz tone at 48 kHz (off by %f)" % worst)
	for rate: int in [48000, 44100]:
		for hz: float in [300.0, 3000.0]:
			var level := PackedFloat64Array()
			for sample: int in _samples(
				MicResampler.new(rate, 16000).process(_tone(hz, rate, rate))
			):
				level.append(sample / 32767.0)
			var ratio: float = _rms(level) / (0.5 / sqrt(2.0))
			_check.call(
				ratio > 0.9 and ratio < 1.01, "%d Hz at %d Hz: level %f" % [int(hz), rate, ratio]
			)


func _test_clipping() -> void:
	var loud := PackedVector2Array([Vector2(2, 2), Vector2(2, 2), Vector2(2, 2)])
	_check.call(MicResampler.new(48000, 16000).process(loud).decode_s16(0) == 32767, "clipped")
	var low := PackedVector2Array([Vector2(-2, -2), Vector2(-2, -2), Vector2(-2, -2)])
	_check.call(MicResampler.new(48000, 16000).process(low).decode_s16(0) == -32768, "clipped low")
#endregion
