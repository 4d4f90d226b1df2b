extends HBoxContainer
## The demo's talking face: a head drawn in code whose mouth follows the NPC speaking, and the
## line's words shown as they are spoken (per-word subtitles). An [NpcVoiceMouth] listens to the
## speaker's voice player; its [method NpcVoiceMouth.get_open_amount] and
## [method NpcVoiceMouth.get_roundness] shape a drawn mouth (no art needed: a game would give the
## mouth a [Sprite2D] with a frame per viseme, or a [MeshInstance3D] with blend shapes, as
## [member NpcVoiceMouth.target]). The words come from the player's
## [signal NpcVoicePlayer.word_started].

#region Constants
const SKIN: Color = Color(0.93, 0.78, 0.62)
const FEATURES: Color = Color(0.2, 0.13, 0.1)
const LIPS: Color = Color(0.55, 0.16, 0.16)
## Points of the mouth's outline.
const MOUTH_POINTS: int = 24
#endregion

#region Public Variables
## Moves with the voice of the player given to [method follow].
var mouth: NpcVoiceMouth = NpcVoiceMouth.new()
## The words of the line so far.
var words: Label = Label.new()
#endregion

#region Private Variables
var _canvas: Control = Control.new()
var _player: Node = null
var _shape: Vector2 = Vector2(-1.0, -1.0)
#endregion


#region Engine Callbacks
func _ready() -> void:
	_canvas.custom_minimum_size = Vector2(120, 120)
	_canvas.draw.connect(_on_canvas_draw)
	add_child(_canvas)
	words.size_flags_horizontal = Control.SIZE_EXPAND_FILL
	words.autowrap_mode = TextServer.AUTOWRAP_WORD_SMART
	words.vertical_alignment = VERTICAL_ALIGNMENT_CENTER
	words.add_theme_font_size_override("font_size", 20)
	add_child(words)
	mouth.name = "Mouth"
	add_child(mouth)


func _process(_delta: float) -> void:
	var shape := Vector2(mouth.get_open_amount(), mouth.get_roundness())
	if not shape.is_equal_approx(_shape):
		_shape = shape
		_canvas.queue_redraw()


#endregion


#region Public Functions
## Moves the mouth with [param player]'s voice (an NPC voice player) and shows its words, from
## its next word on.
func follow(player: Node) -> void:
	if is_instance_valid(_player) and _player.is_connected(&"word_started", _on_word_started):
		_player.disconnect(&"word_started", _on_word_started)
	_player = player
	mouth.voice_player = player
	words.text = ""
	if player != null:
		player.connect(&"word_started", _on_word_started)


#endregion


#region Signal Handlers
func _on_word_started(_turn_id: int, text: String) -> void:
	words.text = (words.text + " " + text).strip_edges()


func _on_canvas_draw() -> void:
	var center: Vector2 = _canvas.get_size() / 2.0
	var radius: float = minf(center.x, center.y) - 4.0
	_canvas.draw_circle(center, radius, SKIN)
	for side: float in [-1.0, 1.0]:
		_canvas.draw_circle(center + Vector2(side * 0.35, -0.25) * radius, 0.09 * radius, FEATURES)
	var open: float = maxf(_shape.x, 0.0)
	var width: float = radius * lerpf(0.8, 0.35, maxf(_shape.y, 0.0))
	var height: float = radius * lerpf(0.05, 0.5, open)
	var middle: Vector2 = center + Vector2(0.0, 0.45 * radius)
	var outline := PackedVector2Array()
	for i: int in MOUTH_POINTS:
		var angle: float = TAU * i / MOUTH_POINTS
		outline.append(middle + Vector2(cos(angle) * width, sin(angle) * height) / 2.0)
	_canvas.draw_colored_polygon(outline, LIPS)
#endregion
