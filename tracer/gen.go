package tracer

// The Makefile's generate target sets BPF_CLANG and BPF_STRIP to the pinned
// Debian clang-19 tools, so the committed outputs are reproducible.
//go:generate go tool bpf2go -cc ${BPF_CLANG} -strip ${BPF_STRIP} -cflags "-O2 -g -Wall -Werror" -target bpfel -type pkt -type hop_event -type hop_next_event -type drop_event -type event_kind -type layer -type filter_field -type hook_key -type hook_slot -type hook_flag -type lost_idx -type hook_id -type hook_pair -type hist -type drop_key -type flight -type hist_slot -type tunnel_bits hoptrace ../bpf/hoptrace.c -- -I../bpf -I/usr/include/x86_64-linux-gnu
