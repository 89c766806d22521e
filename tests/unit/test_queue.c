/* Unit tests for queue.c: FIFO order, record counts, watermarks, growth. */
#include <jansson.h>
#include "core/queue.h"
#include "tap.h"

static json_t *batch_of(int n, int base)
{
	json_t *b = json_array();
	int i;
	for (i = 0; i < n; i++)
		json_array_append_new(b, json_integer(base + i));
	return b;
}

int main(void)
{
	struct queue q;
	json_t *b, *popped;
	int i, ok_order = 1;

	queue_init(&q, 100, 50);
	ok(queue_empty(&q), "new queue is empty");
	ok(!queue_full(&q) && queue_low(&q), "new queue is below both watermarks");

	b = batch_of(60, 0);
	queue_push(&q, b);
	json_decref(b);
	is_int(q.records, 60, "records counted on push");
	ok(!queue_full(&q) && !queue_low(&q), "60 records: between watermarks");
	b = batch_of(40, 60);
	queue_push(&q, b);
	json_decref(b);
	ok(queue_full(&q), "100 records: at the high watermark");

	popped = queue_pop(&q);
	is_int(json_array_size(popped), 60, "FIFO: first batch first");
	is_int(json_integer_value(json_array_get(popped, 0)), 0, "first batch content intact");
	json_decref(popped);
	is_int(q.records, 40, "records decremented on pop");
	ok(queue_low(&q), "40 records: at or below the low watermark");
	is_int(q.peak, 100, "peak remembers the highest fill");

	/* Growth past the initial ring and wrap-around keep FIFO order. */
	for (i = 0; i < 100; i++) {
		b = batch_of(1, 1000 + i);
		queue_push(&q, b);
		json_decref(b);
		if (i % 3 == 0) {
			popped = queue_pop(&q);
			json_decref(popped);
		}
	}
	{
		long long prev = -1;
		while ((popped = queue_pop(&q)) != NULL) {
			long long v = json_integer_value(json_array_get(popped, 0));
			if (v <= prev)
				ok_order = 0;
			prev = v;
			json_decref(popped);
		}
	}
	ok(ok_order, "order kept across growth and wrap-around");
	is_int(q.records, 0, "drained queue counts zero records");
	ok(queue_pop(&q) == NULL, "pop on empty returns NULL");

	/* A shared batch survives in two queues. */
	{
		struct queue q2;
		queue_init(&q2, 10, 5);
		b = batch_of(3, 7);
		queue_push(&q, b);
		queue_push(&q2, b);
		json_decref(b);
		queue_clear(&q);
		popped = queue_pop(&q2);
		is_int(json_integer_value(json_array_get(popped, 2)), 9,
		       "batch shared by two queues stays valid after one is cleared");
		json_decref(popped);
		queue_clear(&q2);
	}
	queue_init(&q, 10, 20);
	ok(q.low < q.high, "low watermark is kept below high");
	queue_clear(&q);
	return done_testing();
}
