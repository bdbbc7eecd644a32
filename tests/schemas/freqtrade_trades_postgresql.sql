-- freqtrade 2024.10: the `trades` table as freqtrade creates it on postgresql.
-- Generated from freqtrade/persistence/trade_model.py (class Trade) with SQLAlchemy 2.1.9's
-- create_all for the postgresql dialect; nothing edited.
CREATE TYPE tradingmode AS ENUM ('SPOT', 'MARGIN', 'FUTURES');

CREATE TABLE trades (
	id SERIAL NOT NULL, 
	exchange VARCHAR(25) NOT NULL, 
	pair VARCHAR(25) NOT NULL, 
	base_currency VARCHAR(25), 
	stake_currency VARCHAR(25), 
	is_open BOOLEAN NOT NULL, 
	fee_open FLOAT NOT NULL, 
	fee_open_cost FLOAT, 
	fee_open_currency VARCHAR(25), 
	fee_close FLOAT NOT NULL, 
	fee_close_cost FLOAT, 
	fee_close_currency VARCHAR(25), 
	open_rate FLOAT NOT NULL, 
	open_rate_requested FLOAT, 
	open_trade_value FLOAT, 
	close_rate FLOAT, 
	close_rate_requested FLOAT, 
	realized_profit FLOAT, 
	close_profit FLOAT, 
	close_profit_abs FLOAT, 
	stake_amount FLOAT NOT NULL, 
	max_stake_amount FLOAT, 
	amount FLOAT NOT NULL, 
	amount_requested FLOAT, 
	open_date TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	close_date TIMESTAMP WITHOUT TIME ZONE, 
	stop_loss FLOAT, 
	stop_loss_pct FLOAT, 
	initial_stop_loss FLOAT, 
	initial_stop_loss_pct FLOAT, 
	is_stop_loss_trailing BOOLEAN NOT NULL, 
	max_rate FLOAT, 
	min_rate FLOAT, 
	exit_reason VARCHAR(255), 
	exit_order_status VARCHAR(100), 
	strategy VARCHAR(100), 
	enter_tag VARCHAR(255), 
	timeframe INTEGER, 
	trading_mode tradingmode, 
	amount_precision FLOAT, 
	price_precision FLOAT, 
	precision_mode INTEGER, 
	precision_mode_price INTEGER, 
	contract_size FLOAT, 
	leverage FLOAT, 
	is_short BOOLEAN NOT NULL, 
	liquidation_price FLOAT, 
	interest_rate FLOAT NOT NULL, 
	funding_fees FLOAT, 
	funding_fee_running FLOAT, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_trades_pair ON trades (pair);

CREATE INDEX ix_trades_is_open ON trades (is_open);
