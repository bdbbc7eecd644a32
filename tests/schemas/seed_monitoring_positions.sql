-- The seed trading bot's positions table (github.com/JacobJanuary/TradingBot, database/init.sql at 116d884,
-- a pg_dump of its production schema): the table, its sequence, key and indexes, as dumped.

CREATE SCHEMA monitoring;

CREATE TABLE monitoring.positions (
    id integer NOT NULL,
    signal_id integer,
    symbol character varying(20) NOT NULL,
    exchange character varying(50) NOT NULL,
    side character varying(10) NOT NULL,
    quantity numeric(20,8) NOT NULL,
    entry_price numeric(20,8) NOT NULL,
    current_price numeric(20,8),
    stop_loss_price numeric(20,8),
    take_profit_price numeric(20,8),
    unrealized_pnl numeric(20,8),
    realized_pnl numeric(20,8),
    fees numeric(20,8) DEFAULT 0,
    status character varying(20) DEFAULT 'active'::character varying NOT NULL,
    exit_reason text,
    opened_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    closed_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now(),
    leverage numeric(10,2) DEFAULT 1.0,
    stop_loss numeric(20,8),
    take_profit numeric(20,8),
    pnl numeric(20,8),
    pnl_percentage numeric(10,4),
    trailing_activated boolean DEFAULT false,
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    error_details jsonb,
    retry_count integer DEFAULT 0,
    last_error_at timestamp with time zone,
    has_trailing_stop boolean DEFAULT true NOT NULL,
    has_stop_loss boolean DEFAULT false,
    exchange_order_id character varying(100),
    trailing_activation_percent numeric(10,4),
    trailing_callback_percent numeric(10,4),
    signal_stop_loss_percent numeric(10,4),
    spread_at_entry numeric(10,4)
);

CREATE SEQUENCE monitoring.positions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE monitoring.positions_id_seq OWNED BY monitoring.positions.id;

ALTER TABLE ONLY monitoring.positions ALTER COLUMN id SET DEFAULT nextval('monitoring.positions_id_seq'::regclass);

ALTER TABLE ONLY monitoring.positions
    ADD CONSTRAINT positions_pkey PRIMARY KEY (id);

CREATE INDEX idx_positions_exchange_order ON monitoring.positions USING btree (exchange_order_id);
CREATE INDEX idx_positions_exit_reason ON monitoring.positions USING btree (exit_reason) WHERE (exit_reason IS NOT NULL);
CREATE INDEX idx_positions_opened_at ON monitoring.positions USING btree (opened_at);
CREATE INDEX idx_positions_signal_sl_percent ON monitoring.positions USING btree (signal_stop_loss_percent) WHERE (signal_stop_loss_percent IS NOT NULL);
CREATE INDEX idx_positions_status ON monitoring.positions USING btree (status);
CREATE INDEX idx_positions_symbol ON monitoring.positions USING btree (symbol);
CREATE UNIQUE INDEX idx_unique_active_position ON monitoring.positions USING btree (symbol, exchange) WHERE ((status)::text = ANY (ARRAY[('active'::character varying)::text, ('entry_placed'::character varying)::text, ('pending_sl'::character varying)::text, ('pending_entry'::character varying)::text]));
