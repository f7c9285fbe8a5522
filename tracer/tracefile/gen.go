package tracefile

// The fields of event.Packet are listed once, in internal/codecgen/fields.go;
// codecgen writes the code that codes them.
//go:generate go run ./internal/codecgen -o codec_packet_gen.go
